import json
import pickle
from pathlib import Path

import pytest
import torch
from conftest import run_cli
from safetensors.torch import save_file

from composer import ComposerError, checkpoint


def test_save_and_read_round_trip(tmp_path):
    path = tmp_path / "m.safetensors"
    checkpoint.save(path, {"w": torch.arange(6.0).reshape(2, 3)}, {"model": {"layers": 1}, "encoder": {}})
    ckpt = checkpoint.load(path)
    assert ckpt.meta["format_version"] == checkpoint.FORMAT_VERSION
    assert torch.equal(ckpt.weights["w"], torch.arange(6.0).reshape(2, 3))
    assert not list(tmp_path.glob(".*tmp"))  # no temp file left behind


class Payload:
    def __reduce__(self):
        return (Path.write_text, (Path(PWNED), "payload ran"))


PWNED = ""


def test_pickle_that_runs_code_is_refused_and_never_runs(tmp_path):
    global PWNED
    PWNED = str(tmp_path / "pwned")
    bad = tmp_path / "evil.safetensors"
    bad.write_bytes(pickle.dumps(Payload()))
    with pytest.raises(ComposerError, match="not a composer checkpoint"):
        checkpoint.load(bad)
    state = tmp_path / "state.pt"
    torch.save({"x": Payload()}, state)
    with pytest.raises(ComposerError, match="cannot resume"):
        checkpoint.load_state(state)
    result = run_cli(["info", str(bad)])
    assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1
    assert not Path(PWNED).exists()


def test_truncated_foreign_and_newer_files_are_one_line_errors(tmp_path):
    good = tmp_path / "good.safetensors"
    checkpoint.save(good, {"w": torch.zeros(1000)}, {"model": {}})
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(good.read_bytes()[:-500])
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    newer = tmp_path / "newer.safetensors"
    save_file({"w": torch.zeros(2)}, str(newer), metadata={"composer": json.dumps({"format_version": 99})})
    with pytest.raises(ComposerError, match="damaged|not a composer"):
        checkpoint.load(truncated)
    with pytest.raises(ComposerError, match="not a composer checkpoint"):
        checkpoint.load(foreign)
    with pytest.raises(ComposerError, match="newer than this composer"):
        checkpoint.load(newer)
    with pytest.raises(ComposerError, match="not found"):
        checkpoint.load(tmp_path / "missing.safetensors")


def test_failed_write_leaves_the_old_file(tmp_path):
    path = tmp_path / "m.safetensors"
    checkpoint.save(path, {"w": torch.ones(3)}, {"v": 1})

    def explode(tmp):
        tmp.write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        checkpoint.atomic_write(path, explode)
    assert torch.equal(checkpoint.load(path).weights["w"], torch.ones(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]


def save_tiny(path, model_changes=None, weights=None, **meta):
    """A checkpoint of composer.testing's tiny model (a char encoder over 7 characters: 10 tokens), with its
    config, weights or metadata changed as a crafted or damaged file would have them."""
    from composer.testing import tiny_model

    model = tiny_model()
    config = {**model.config.to_dict(), **(model_changes or {})}
    encoder = {"name": "char", "modality": "text", "state": {"options": {}, "chars": list("abcdefg")}}
    checkpoint.save(path, {**model.state_dict(), **(weights or {})}, {"model": config, "encoder": encoder, **meta})
    return path


def test_the_tiny_checkpoint_loads(tmp_path):
    from composer import plugins

    model, encoder, meta = checkpoint.load_model(save_tiny(tmp_path / "ok.safetensors"), plugins.get_registry())
    assert model.config.layers == 2 and encoder.name == "char" and meta["model"]["vocab_size"] == 10


MEASURE = """
import sys, time
from composer import ComposerError, checkpoint, plugins
registry = plugins.get_registry()
start = time.perf_counter()
try:
    checkpoint.load_model(sys.argv[1], registry)
    print("loaded")
except ComposerError as exc:
    print(exc)
seconds = time.perf_counter() - start
# this process's own peak (VmHWM): ru_maxrss would keep the parent's peak, which Linux carries across exec
with open("/proc/self/status") as status:
    peak = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))
print(seconds, peak)
"""


@pytest.mark.parametrize("changes, message", [
    ({"layers": 1_000_000}, "1,000,000 layers need 4,000,003 tensors; the file holds 11"),
    ({"hidden_size": 10**9}, "hidden_size 1,000,000,000 is more than all its tensors hold"),
    ({"vocab_size": 10**9}, "vocab_size 1,000,000,000 is more than all its tensors hold"),
    ({"attention": 10**9}, "attention must be at most 10,000 steps"),
])
def test_a_checkpoint_declaring_an_absurd_model_is_refused_in_seconds_and_little_memory(tmp_path, changes, message):
    import subprocess
    import sys

    path = save_tiny(tmp_path / "crafted.safetensors", changes)
    result = subprocess.run([sys.executable, "-c", MEASURE, str(path)], capture_output=True, text=True, timeout=120)
    said, measured = result.stdout.strip().splitlines()
    seconds, peak_bytes = map(float, measured.split())
    assert message in said and said.startswith(f"checkpoint {path}")
    assert seconds < 5 and peak_bytes < 500e6, (seconds, peak_bytes)


def test_a_shape_mismatch_names_the_tensor_and_both_shapes(tmp_path):
    from composer import plugins

    path = save_tiny(tmp_path / "wide.safetensors", {"hidden_size": 32})
    with pytest.raises(ComposerError) as caught:
        checkpoint.load_model(path, plugins.get_registry())
    assert str(caught.value) == (f"checkpoint {path}: tensor 'layers.0.rnn.weight_ih_l0' has shape [64, 8], "
                                 "the config needs [128, 8]")


@pytest.mark.parametrize("weight, message", [
    (torch.ones(10, 8, dtype=torch.bool), "tensor 'adapter.weight' is stored as BOOL; the model needs floating-point"),
    (torch.ones(10, 8, dtype=torch.int32), "tensor 'adapter.weight' is stored as I32; the model needs floating-point"),
    (torch.full((10, 8), float("nan")), "tensor 'adapter.weight' holds NaN or infinite values"),
    (torch.full((10, 8), float("-inf")), "tensor 'adapter.weight' holds NaN or infinite values"),
])
def test_non_float_and_non_finite_weights_are_refused_in_one_line(tmp_path, weight, message):
    path = save_tiny(tmp_path / "bad.safetensors", weights={"adapter.weight": weight})
    result = run_cli(["sample", "--checkpoint", str(path), "-o", str(tmp_path / "out")])
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1 and lines[0].startswith(f"Error: checkpoint {path}: {message}")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("changes, message", [
    ({"layers": "3"}, "invalid ModelConfig: layers must be a whole number, got '3'"),
    ({"dropout": float("nan")}, "invalid ModelConfig: dropout must be a finite number, got nan"),
    ({"head": []}, "invalid ModelConfig: head must be a table, got []"),
    ({"colour": "red"}, "unknown ModelConfig keys: colour"),
])
def test_a_config_of_the_wrong_types_is_refused_naming_the_field(tmp_path, changes, message):
    from composer import plugins

    path = save_tiny(tmp_path / "typed.safetensors", changes)
    with pytest.raises(ComposerError, match=f"^checkpoint {path}: {message}$".replace("[", r"\[").replace("]", r"\]")):
        checkpoint.load_model(path, plugins.get_registry())


def test_a_header_claiming_more_than_the_limit_is_refused_without_reading_it(tmp_path):
    path = tmp_path / "huge-header.safetensors"
    path.write_bytes((10**12).to_bytes(8, "little") + b"{}")
    with pytest.raises(ComposerError, match="its header claims 1,000,000,000,000 bytes; composer reads at most"):
        checkpoint.read_meta(path)


def test_a_pickled_state_is_refused_in_one_line_without_torch_advice(tmp_path):
    import warnings

    run = tmp_path / "run"
    run.mkdir()
    torch.save({"x": Payload()}, run / "state.pt")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ComposerError) as refused:
            checkpoint.load_state(run / "state.pt")
    assert str(refused.value) == (f"cannot resume from {run / 'state.pt'}: it holds objects other than tensors and "
                                  "plain values, which composer never unpickles (not a state.pt that composer wrote)")
    assert not caught
    result = run_cli(["train", "--resume", "-o", str(run), "--encoder", "char", "--corpus", str(tmp_path)])
    assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "weights_only" not in result.stderr and "never unpickles" in result.stderr


def test_info_clips_a_long_description_and_escapes_control_characters(tmp_path):
    path = save_tiny(tmp_path / "long.safetensors", description="\x1b[2J" + "la " * 500_000)
    result = run_cli(["info", str(path)])
    assert result.returncode == 0, result.stderr
    line = next(line for line in result.stdout.splitlines() if line.startswith("description"))
    assert line.startswith("description  \\x1b[2Jla la") and "\x1b" not in result.stdout
    assert line.endswith("... (1,500,017 characters; composer info --json shows all)") and len(line) < 400
