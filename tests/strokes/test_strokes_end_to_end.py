"""The stroke modality through the whole core, as a user drives it: train on a Sketch-RNN .npz (decoder-only
and VAE), evaluate (L_R, L_KL, anomaly ranking), sample grids, variations and interpolations."""

import math
import os
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from composer_strokes import Drawing
from conftest import run_cli

import composer

SMALL = ["--epochs", "2", "--batch-size", "4", "--hidden-size", "24", "--embedding-size", "8", "--layers", "1",
         "--workers", "1", "--seed", "0"]


def shape(kind: int, rng: np.random.Generator) -> np.ndarray:
    """A small stroke-3 drawing: a square (kind 0) or a zigzag (kind 1), jittered."""
    if kind == 0:
        points = [[0, 0, 0], [20, 0, 0], [0, 20, 0], [-20, 0, 0], [0, -20, 1]]
    else:
        points = [[0, 0, 0], [10, 10, 0], [10, -10, 0], [10, 10, 1], [-30, 10, 0], [30, 0, 1]]
    out = np.array(points, dtype=np.int16)
    out[:, :2] += rng.integers(-2, 3, size=(len(points), 2)).astype(np.int16)
    return out


def objects(arrays):
    holder = np.empty(len(arrays), dtype=object)
    holder[:] = arrays
    return holder


@pytest.fixture
def npz(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "shapes.npz"
    np.savez(path, train=objects([shape(i % 2, rng) for i in range(24)]),
             valid=objects([shape(i % 2, rng) for i in range(6)]), test=objects([shape(i % 2, rng) for i in range(6)]))
    return path


def test_decoder_only_model_trains_evaluates_and_samples_drawings(npz, tmp_path):
    run = tmp_path / "run"
    result = run_cli(["train", "--encoder", "strokes", "--corpus", str(npz), "-o", str(run), *SMALL])
    assert result.returncode == 0, result.stderr
    assert "24 train / 6 valid sequences" in result.stderr  # the file's own split, test left out
    model = run / "model.safetensors"
    result = run_cli(["evaluate", "--checkpoint", str(model), "--corpus", str(npz), "--samples", "2"])
    assert result.returncode == 0, result.stderr
    assert "its test split" in result.stdout and "L_R " in result.stdout and "no latent code" in result.stdout
    assert "token accuracy" not in result.stdout  # accuracy means nothing for pen offsets
    out = tmp_path / "out"
    result = run_cli(["sample", "--checkpoint", str(model), "-n", "3", "--seed", "1", "-o", str(out),
                      "--length", "30"])
    assert result.returncode == 0, result.stderr
    names = sorted(p.name for p in out.iterdir())
    assert names == ["run-1-1.png", "run-1-1.svg", "run-1-2.png", "run-1-2.svg", "run-1-3.png", "run-1-3.svg",
                     "run-1-grid.png", "run-1-grid.svg"]
    ET.parse(out / "run-1-grid.svg")
    again = run_cli(["sample", "--checkpoint", str(model), "-n", "3", "--seed", "1", "-o", str(out), "--length", "30"])
    assert again.returncode == 1 and "already exist" in again.stderr  # nothing a user made is overwritten
    like = run_cli(["sample", "--checkpoint", str(model), "--like", str(out / "run-1-1.svg"), "-o", str(out)])
    assert like.returncode == 1 and "has no latent code" in like.stderr and "Traceback" not in like.stderr


def test_vae_trains_and_its_latent_space_serves_variations_interpolations_and_anomaly_scores(npz, tmp_path):
    run = tmp_path / "vae"
    result = run_cli(["train", "--encoder", "strokes", "--corpus", str(npz), "-o", str(run), *SMALL,
                      "--family", "vae", "--latent-size", "4", "--encoder-size", "8", "--kl-anneal", "10"])
    assert result.returncode == 0, result.stderr
    model = run / "model.safetensors"
    result = run_cli(["evaluate", "--checkpoint", str(model), "--corpus", str(npz), "--samples", "0", "--json"])
    assert result.returncode == 0, result.stderr
    import json

    sketch = json.loads(result.stdout)["sketch_rnn"]
    assert sketch["N_max"] == 251 and sketch["L_KL"] >= 0 and math.isfinite(sketch["L_R"])
    assert sketch["L_R"] == pytest.approx(sketch["L_s"] + sketch["L_p"], abs=1e-6)

    session = composer.load(model, device="cpu")
    rng = np.random.default_rng(1)
    drawings = [Drawing(shape(0, rng).astype(np.float32)), Drawing(shape(1, rng).astype(np.float32))]
    z = session.encode(drawings[0])
    assert z.shape == (4,) and np.isfinite(z).all()
    morph = session.interpolate(drawings[0], drawings[1], n=4, seed=2, length=20)
    assert len(morph) == 4 and len(morph.sequences) == 4
    variations = session.generate(3, seed=5, like=drawings[0], length=20)
    assert len(variations) == 3
    assert session.generate(3, seed=5, like=drawings[0], length=20).sequences[0].tokens.tolist() == \
        variations.sequences[0].tokens.tolist()  # same seed, same drawings
    decoded = session.decode(z, n=2, seed=1, length=20)
    assert len(decoded) == 2

    out = tmp_path / "morph"
    session.write(drawings, out, "svg", stem="shape")
    result = run_cli(["sample", "--checkpoint", str(model), "--interpolate", str(out / "shape-1.svg"),
                      str(out / "shape-2.svg"), "-n", "5", "--seed", "1", "-o", str(out / "i"), "--format", "svg"])
    assert result.returncode == 0, result.stderr
    assert len(list((out / "i").glob("*.svg"))) == 6  # five steps and their grid

    ranked = run_cli(["evaluate", "--checkpoint", str(model), "--rank", str(npz), "--top", "3"])
    assert ranked.returncode == 0, ranked.stderr
    assert ranked.stdout.startswith("36 item(s), most unlikely first") and len(ranked.stdout.splitlines()) == 4


def test_a_malformed_npz_is_one_line_and_a_pickle_payload_never_runs(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"this is not a zip file")
    result = run_cli(["train", "--encoder", "strokes", "--corpus", str(bad), "-o", str(tmp_path / "r"), *SMALL])
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "bad.npz" in result.stderr.strip().splitlines()[-1]

    marker = tmp_path / "PWNED"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    evil = tmp_path / "evil.npz"
    np.savez(evil, train=objects([Payload()]))
    result = run_cli(["train", "--encoder", "strokes", "--corpus", str(evil), "-o", str(tmp_path / "e"), *SMALL])
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert not marker.exists()


def test_class_conditional_drawings_follow_their_label(tmp_path):
    run = tmp_path / "glyphs"
    result = run_cli(["train", "--encoder", "strokes", "--corpus", "hershey:futural", "--label", "-o", str(run),
                      *SMALL, "--epochs", "1", "--max-steps", "3"])
    assert result.returncode == 0, result.stderr
    session = composer.load(run / "model.safetensors", device="cpu")
    assert "g" in session.labels and len(session.labels) == 94
    a = session.generate(2, seed=1, label="g", length=10)
    b = session.generate(2, seed=1, label="W", length=10)
    assert a.sequences[0].tokens.tolist() != b.sequences[0].tokens.tolist()
    result = run_cli(["sample", "--checkpoint", str(run / "model.safetensors"), "--label", "nosuch", "-o",
                      str(tmp_path / "o")])
    assert result.returncode == 1 and "unknown label 'nosuch'" in result.stderr
