"""The shipped styles: every ``*.safetensors`` here is registered as a style under its file name."""

from pathlib import Path

from composer.api import hookimpl
from composer.checkpoint import style_from_checkpoint

HERE = Path(__file__).parent


@hookimpl
def register_styles(register):
    for path in sorted(HERE.glob("*.safetensors")):
        register(style_from_checkpoint(path, source="built-in"))
