"""Contract tests generated for every registered encoder and sampler: nobody writes them by hand. They are the
checks of ``composer.testing``, which plugin authors run on their own encoders and samplers."""

import dataclasses
import os

import pytest
from conftest import TOY

from composer import plugins, testing


def _names(kind):
    os.environ["COMPOSER_LOAD_PLUGINS"] = ""
    plugins.reset()
    try:
        return sorted(getattr(plugins.get_registry(), kind))
    finally:
        plugins.reset()
        del os.environ["COMPOSER_LOAD_PLUGINS"]


ENCODERS = _names("encoders") + ["toy"]
SAMPLERS = _names("samplers")


@pytest.fixture
def registry(monkeypatch):
    monkeypatch.syspath_prepend(str(TOY))
    import composer_toy

    return testing.registry(composer_toy)


def make_encoder(registry, name):
    encoder = registry.encoder(name)()
    items = encoder.example_items()
    if encoder.needs_fit:
        encoder.fit(items)
    return encoder, items


@pytest.mark.parametrize("name", ENCODERS)
def test_encoder_round_trips_its_examples(registry, name):
    testing.check_round_trip(*make_encoder(registry, name))


@pytest.mark.parametrize("name", ENCODERS)
def test_encoder_state_survives_a_checkpoint(registry, name):
    testing.check_state(*make_encoder(registry, name))


@pytest.mark.parametrize("name", ENCODERS)
def test_encoder_properties_have_one_value_per_token(registry, name):
    testing.check_properties(*make_encoder(registry, name))


@pytest.mark.parametrize("name", ENCODERS)
def test_encoder_trains_and_samples_seeded_under_its_constraint(registry, name):
    encoder, items = make_encoder(registry, name)
    model = testing.check_trains_and_samples(encoder, items, registry)
    testing.check_seeds(encoder, items, registry, model=model)


@pytest.mark.parametrize("name", SAMPLERS)
def test_sampler_contract(registry, name):
    testing.check_sampler(name, registry=registry)


# ------------------------------------------------------------------ the checks fail when they should


@pytest.fixture
def toy_encoder(registry):
    return registry.encoder("toy")


def test_check_encoder_runs_everything_on_a_plugin_encoder_class(registry, toy_encoder):
    testing.check_encoder(toy_encoder, registry=registry)


def test_check_round_trip_fails_naming_an_encoder_whose_decode_loses_information(toy_encoder):
    class Lossy(toy_encoder):
        name = "lossy"

        def decode(self, seq):
            return super().decode(seq)[:-1]  # drops the last step

    encoder = Lossy()
    with pytest.raises(AssertionError, match=r"^encoder 'lossy': round trip of item 0 changed it"):
        testing.check_round_trip(encoder, encoder.example_items())


def test_check_state_fails_for_an_encoder_that_forgets_its_options(toy_encoder):
    encoder = toy_encoder()
    items = encoder.example_items()

    class Forgetful(toy_encoder):
        name = "forgetful"

        def state_dict(self):
            return {"broken": object()}

    with pytest.raises(AssertionError, match="encoder 'forgetful': state_dict.. is not JSON-serialisable"):
        testing.check_state(Forgetful(), items)


def test_check_seeds_fails_for_an_encoder_whose_samples_ignore_the_seed(registry, toy_encoder):
    counter = iter(range(1000))

    class Unseeded(toy_encoder):
        name = "unseeded"

        def generation_plan(self, length=None, **request):
            plan = super().generation_plan(length, **request)
            plan.primer = [2 + next(counter) % 3]  # a different start each call
            return plan

    encoder = Unseeded()
    if encoder.needs_fit:
        encoder.fit(encoder.example_items())
    with pytest.raises(AssertionError, match="encoder 'unseeded': seed 3 twice gave different samples"):
        testing.check_seeds(encoder, encoder.example_items(), registry)


def test_check_sampler_fails_naming_a_sampler_that_misreports_the_likelihood(registry):
    base = registry.sampler("greedy")

    class Boastful(type(base)):
        name = "boastful"

        def generate(self, run, options):
            return [dataclasses.replace(g, log_likelihood=0.0) for g in super().generate(run, options)]

    with pytest.raises(AssertionError, match=r"^sampler 'boastful': reported log-likelihood 0.000000"):
        testing.check_sampler(Boastful())


def test_check_sampler_fails_for_unvalidated_options(registry):
    base = registry.sampler("greedy")

    class Lax(type(base)):
        name = "lax"

        def options(self, given=None, fallback=None):
            return self.Options()

    with pytest.raises(AssertionError, match=r"sampler 'lax': options\(\{'nosuch': '1'\}\) did not raise"):
        testing.check_sampler_options(Lax())


def test_registry_isolates_and_reports_a_broken_plugin():
    reg = testing.registry()
    assert "toy" not in reg.encoders and "temperature" in reg.samplers

    class Broken:
        __name__ = "broken"

        @staticmethod
        def register_encoders(register):
            raise RuntimeError("nope")

    from composer import hookimpl

    Broken.register_encoders = hookimpl(Broken.register_encoders)
    with pytest.raises(AssertionError, match="plugin 'broken' failed to register: RuntimeError: nope"):
        testing.registry(Broken())

