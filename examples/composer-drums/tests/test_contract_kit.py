"""The encoder contract the built-ins pass, run on the drums encoder with composer.testing."""

from composer.testing import check_encoder, registry

import composer_drums


def test_the_drums_encoder_meets_the_contract():
    # the default registry holds only the built-ins: give it this plugin
    check_encoder("drums", registry=registry(composer_drums))
