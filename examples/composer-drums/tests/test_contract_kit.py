"""The shared encoder contract (composer.testing), once the installed composer has it."""

import pytest


def test_drums_encoder_meets_the_contract():
    testing = pytest.importorskip("composer.testing")
    testing.check_encoder("drums")
