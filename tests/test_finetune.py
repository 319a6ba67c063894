import json

import pytest
from conftest import run_cli

from composer import checkpoint, plugins
from composer.training import TrainConfig, train

TINY = ["--batch-size", "4", "--seq-len", "16", "--workers", "1"]


@pytest.fixture
def parent(toy, toy_corpus, tmp_path):
    config = TrainConfig(corpus=str(toy_corpus), encoder="toy", output=str(tmp_path / "parent"), epochs=2,
                         batch_size=4, seq_len=16, workers=1, model={"layers": 2, "hidden_size": 16})
    train(config, plugins.get_registry())
    return tmp_path / "parent" / "model.safetensors"


@pytest.fixture
def small_corpus(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    for i in range(10):
        (folder / f"{i}.toy").write_text("cabcabcab\nbcabcabca\n")
    return folder


def test_finetune_saves_a_user_style_that_sample_styles_and_info_know(toy, parent, small_corpus, isolated, tmp_path):
    result = run_cli(["finetune", "--from", str(parent), "--corpus", str(small_corpus), "--name", "mine",
                      "--epochs", "2", *TINY], env=toy)
    assert result.returncode == 0, result.stderr
    style = isolated / "styles" / "mine.safetensors"
    assert style.is_file() and "composer sample --style mine" in result.stdout
    meta = checkpoint.read_meta(style)
    assert meta["provenance"]["parent"] == str(parent) and meta["encoder"]["state"]["chars"]
    listing = run_cli(["styles"], env=toy)
    assert "mine" in listing.stdout and "user" in listing.stdout and "(from model)" in listing.stdout
    sample = run_cli(["sample", "--style", "mine", "--seed", "1", "-o", str(tmp_path / "out")], env=toy)
    assert sample.returncode == 0, sample.stderr
    assert (tmp_path / "out" / "mine-1-1.txt").is_file()
    assert run_cli(["info", "mine"], env=toy).returncode == 0


def test_finetune_keeps_the_parent_vocabulary_and_freezes_layers(toy, parent, small_corpus, tmp_path):
    from safetensors.torch import load_file

    config = TrainConfig(corpus=str(small_corpus), output=str(tmp_path / "ft"), parent=str(parent), epochs=2,
                         batch_size=4, seq_len=16, workers=1, freeze_embedding=True, freeze_layers=1, lr=1e-2)
    train(config, plugins.get_registry())
    before, after = load_file(str(parent)), load_file(str(tmp_path / "ft" / "model.safetensors"))
    changed = {k for k in before if not before[k].equal(after[k])}
    assert not any(k.startswith(("adapter", "layers.0")) for k in changed)
    assert any(k.startswith("layers.1") for k in changed) and any(k.startswith("head") for k in changed)
    assert checkpoint.read_meta(tmp_path / "ft" / "model.safetensors")["encoder"] == \
        checkpoint.read_meta(parent)["encoder"]


def test_gradual_unfreezing_thaws_the_top_frozen_group_first(toy, parent, small_corpus, tmp_path):
    from composer.training import Trainer

    config = TrainConfig(corpus=str(small_corpus), output=str(tmp_path / "g"), parent=str(parent), freeze_layers=2,
                         freeze_embedding=True, unfreeze_every=1)
    trainer = Trainer(config, plugins.get_registry())
    from composer.model import ModelConfig, SequenceModel

    model = SequenceModel(ModelConfig.from_dict(checkpoint.read_meta(parent)["model"]))
    groups = model.parameter_groups()
    frozen = trainer._frozen_groups(groups)
    assert frozen == ["adapter", "layer0", "layer1"]
    trainable = []
    for epoch in range(4):
        trainer._apply_freezing(model, groups, frozen, epoch)
        trainable.append([name for name, params in groups if params[0].requires_grad])
    assert trainable == [["head"], ["layer1", "head"], ["layer0", "layer1", "head"],
                         ["adapter", "layer0", "layer1", "head"]]


def test_interrupted_finetune_resumes_and_a_half_run_never_becomes_the_style(toy, parent, small_corpus, isolated):
    first = run_cli(["finetune", "--from", str(parent), "--corpus", str(small_corpus), "--name", "half",
                     "--epochs", "3", "--max-steps", "2", *TINY], env=toy)
    assert first.returncode == 0, first.stderr
    state = checkpoint.load_state(isolated / "runs" / "half" / "state.pt")
    assert state["step"] == 2
    resumed = run_cli(["finetune", "--from", str(parent), "--corpus", str(small_corpus), "--name", "half",
                       "--epochs", "3", "--resume", *TINY], env=toy)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stderr and "step 2" in resumed.stderr
    metrics = [json.loads(x) for x in (isolated / "runs" / "half" / "metrics.jsonl").read_text().splitlines()]
    assert metrics[-1]["epoch"] == 3


def test_parent_of_another_modality_is_a_one_line_error(toy, parent, tmp_path):
    folder = tmp_path / "midis"
    folder.mkdir()
    import pretty_midi

    pm = pretty_midi.PrettyMIDI()
    inst = pretty_midi.Instrument(0)
    inst.notes.append(pretty_midi.Note(80, 60, 0, 1))
    pm.instruments.append(inst)
    pm.write(str(folder / "a.mid"))
    result = run_cli(["finetune", "--from", str(parent), "--corpus", str(folder), "--name", "x", *TINY], env=toy)
    assert result.returncode == 1
    assert result.stderr.strip() == f"Error: '{folder}' holds midi files, but this model reads toy"


def test_finetune_may_change_dropout_but_not_the_model_shape(toy, parent, small_corpus, tmp_path):
    config = TrainConfig(corpus=str(small_corpus), output=str(tmp_path / "d"), parent=str(parent), epochs=1,
                         batch_size=4, seq_len=16, workers=1, model={"dropout": 0.4})
    train(config, plugins.get_registry())
    assert checkpoint.read_meta(tmp_path / "d" / "model.safetensors")["model"]["dropout"] == 0.4
    (tmp_path / "wide.toml").write_text("[model]\nhidden_size = 64\n")
    result = run_cli(["finetune", "--from", str(parent), "--corpus", str(small_corpus), "--name", "wide",
                      "--config", str(tmp_path / "wide.toml"), "--dropout", "0.3", *TINY], env=toy)
    assert result.returncode == 1 and "cannot change hidden_size" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_finetune_recipe_settings_win_over_finetune_defaults(toy, parent, small_corpus, isolated, tmp_path):
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(f'corpus = "{small_corpus}"\noutput = "{tmp_path / "ftrun"}"\nlr = 0.02\nepochs = 1\n'
                      'batch_size = 4\nseq_len = 16\nworkers = 1\n')
    result = run_cli(["finetune", "--from", str(parent), "--name", "mine", "--config", str(recipe)], env=toy)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "ftrun" / "metrics.jsonl").is_file() and not (isolated / "runs" / "mine").exists()
    prov = checkpoint.read_meta(isolated / "styles" / "mine.safetensors")["provenance"]
    train_config = prov["train_config"] if isinstance(prov["train_config"], dict) else json.loads(prov["train_config"])
    assert train_config["lr"] == 0.02 and train_config["epochs"] == 1 and train_config["warmup_steps"] == 20
