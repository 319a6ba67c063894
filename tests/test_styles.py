"""The shipped styles: each has its recipe, its provenance, a size that fits the repository, and samples."""

import math
from pathlib import Path

import pytest
from conftest import run_cli

from composer import checkpoint, plugins

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

SHIPPED = Path(__file__).resolve().parents[1] / "checkpoints"
STYLES = sorted(p.stem for p in SHIPPED.glob("*.safetensors"))


def recipe(name: str) -> dict:
    return tomllib.loads((SHIPPED / f"{name}.toml").read_text())


@pytest.mark.parametrize("name", STYLES)
def test_a_shipped_style_has_its_recipe_and_provenance_and_fits_the_repository(name):
    path = SHIPPED / f"{name}.safetensors"
    assert path.stat().st_size < 20 * 2**20
    assert (SHIPPED / f"{name}.toml").is_file()
    meta = checkpoint.read_meta(path)
    prov = meta["provenance"]
    # a density's loss may be negative; a token model's is not
    assert prov["steps"] > 0 and prov["corpus_hash"] and prov["valid"] and math.isfinite(prov["best_valid_loss"])
    assert prov["best_valid_loss"] > 0 or meta["model"]["head"]["type"] != "categorical"
    assert meta["encoder"]["name"] == recipe(name)["encoder"]  # the recipe names the encoder the model uses
    assert plugins.get_registry().style(name).checkpoint == path


@pytest.mark.parametrize("name", STYLES)
def test_a_shipped_style_samples(name, tmp_path):
    if checkpoint.read_meta(SHIPPED / f"{name}.safetensors")["model"].get("family") == "gibbs":
        pytest.skip("a bidirectional style regenerates rather than samples: tests/test_reharmonize.py runs it")
    result = run_cli(["sample", "--style", name, "--seed", "1", "-o", str(tmp_path)])
    assert result.returncode == 0, result.stderr
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(f"{name}-1-1.")]


@pytest.mark.skipif("base" not in STYLES, reason="the base style is not shipped")
def test_base_never_saw_the_benchmark_corpus_nor_bachs_held_out_chorales():
    from composer.data import resolve
    from composer.session import train_config

    config = train_config(SHIPPED / "base.toml")
    refs = {ref for _, ref in resolve(config.corpus, "midi", plugins.get_registry().corpora)}
    assert len(refs) > 2000 and not any(ref.startswith("beethoven/") for ref in refs)
    bach_valid = checkpoint.read_meta(SHIPPED / "bach.safetensors")["provenance"]["valid"]
    assert bach_valid and not refs & set(bach_valid)
    base = checkpoint.read_meta(SHIPPED / "base.safetensors")
    assert base["provenance"]["corpus"] == config.corpus


@pytest.mark.skipif("base" not in STYLES, reason="the base style is not shipped")
def test_bach_and_base_share_one_vocabulary_so_either_fine_tunes_from_the_other():
    base = checkpoint.read_meta(SHIPPED / "base.safetensors")
    bach = checkpoint.read_meta(SHIPPED / "bach.safetensors")
    assert base["encoder"] == bach["encoder"]
    assert base["model"]["vocab_size"] == bach["model"]["vocab_size"]


@pytest.mark.parametrize("name", ["bach", "base", "irish"])
def test_a_shipped_token_style_samples_the_tokens_it_always_has(name):
    """Same seed, same output, across changes of the core: tokens recorded before sequences became arrays."""
    import json

    import composer

    recorded = json.loads((Path(__file__).parent / "data" / "shipped_tokens.json").read_text())
    session = composer.load(name, device="cpu")
    # recorded before polyphony ended at cadences and bach wrote in SATB voicing: those requests turned off
    music = {"length": 4, "requests": {"cadence": "none", "voicing": "free"}} if name != "irish" else {}
    for sampler, options in [(None, {}), ("beam", {"beam_size": 3}), ("top-p", {})]:
        pieces = session.generate(2, seed=1, sampler=sampler, **music, **options)
        *tokens, likelihoods = recorded[f"{name}/{sampler}/1"]
        assert [list(map(int, g.tokens)) for g in pieces.sequences] == tokens
        assert [g.log_likelihood for g in pieces.sequences] == pytest.approx(likelihoods, abs=1e-4)
