"""composer: learn and generate music, text and pen-stroke drawings with stacked LSTMs.

    import composer
    bach = composer.load("bach")
    pieces = bach.generate(n=4, seed=1, length=8, temperature=0.9)
    bach.write(pieces, "out/", formats=["mid", "png"])

The library (``load``, ``Session``, ``train``, ``finetune``, ``evaluate``) is imported on first use, so
that a plugin importing the contract below stays cheap.
"""

from importlib.metadata import PackageNotFoundError, version

from composer.api import (
    MAX_TOKENS,
    Categorical,
    ComposerError,
    Constraint,
    CorpusSource,
    Encoder,
    EncodeReport,
    Generated,
    GenerationPlan,
    HeadSpec,
    MixtureDensity,
    Regeneration,
    Sampler,
    Style,
    Writer,
    WriteSkipped,
    hookimpl,
    parse_options,
)

try:
    __version__ = version("lstm-composer")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = [
    "MAX_TOKENS",
    "Categorical",
    "ComposerError",
    "Constraint",
    "CorpusSource",
    "EncodeReport",
    "Encoder",
    "Generated",
    "GenerationPlan",
    "HeadSpec",
    "MixtureDensity",
    "Regeneration",
    "Sampler",
    "Session",
    "Style",
    "WriteSkipped",
    "Writer",
    "__version__",
    "evaluate",
    "finetune",
    "hookimpl",
    "load",
    "parse_options",
    "train",
]

_LIBRARY = ("Session", "evaluate", "finetune", "load", "train")


def __getattr__(name: str):
    if name in _LIBRARY:
        from composer import session

        return getattr(session, name)
    raise AttributeError(f"module 'composer' has no attribute {name!r}")
