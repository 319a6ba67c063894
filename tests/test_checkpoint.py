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
