"""The text plugin end to end through the command line: train a tiny char model, then sample from it."""

from __future__ import annotations

from pathlib import Path

from conftest import run_cli

CORPUS = "The quick brown fox jumps over the lazy dog.\nPack my box with five dozen liquor jugs.\n\n" * 20


def test_train_then_sample_with_a_primer(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(CORPUS)
    run = tmp_path / "run"
    result = run_cli(["train", "--encoder", "char", "--corpus", str(corpus), "-o", str(run), "--epochs", "1",
                      "--layers", "1", "--hidden-size", "32", "--workers", "1", "--batch-size", "4", "--seq-len", "32"])
    assert result.returncode == 0, result.stderr
    out = tmp_path / "out"
    result = run_cli(["sample", "--checkpoint", str(run / "model.safetensors"), "-O", "prime", "The quick", "--length",
                      "50", "--seed", "3", "-n", "2", "-o", str(out)])
    assert result.returncode == 0, result.stderr
    files = sorted(out.glob("*.txt"))
    assert [f.name for f in files] == ["run-3-1.txt", "run-3-2.txt"]
    for file in files:
        text = file.read_text(encoding="utf-8")
        assert text.startswith("The quick")
        assert len(text.rstrip("\n")) <= len("The quick") + 50
    assert "characters)" in result.stdout and "wrote 2 file(s)" in result.stdout
