"""composer: learn and generate music, text and pen-stroke drawings with stacked LSTMs."""

from importlib.metadata import PackageNotFoundError, version

from composer.api import (
    Categorical,
    ComposerError,
    Constraint,
    CorpusSource,
    Encoder,
    EncodeReport,
    GenerationPlan,
    HeadSpec,
    MixtureDensity,
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
    "Categorical",
    "ComposerError",
    "Constraint",
    "CorpusSource",
    "EncodeReport",
    "Encoder",
    "GenerationPlan",
    "HeadSpec",
    "MixtureDensity",
    "Sampler",
    "Style",
    "WriteSkipped",
    "Writer",
    "__version__",
    "hookimpl",
    "parse_options",
]
