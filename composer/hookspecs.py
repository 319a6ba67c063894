"""The plugin contract. Hooks are always called with keyword arguments."""

from pluggy import HookspecMarker

hookspec = HookspecMarker("composer")


@hookspec
def register_encoders(register):
    """Register Encoder subclasses: ``register(EncoderClass)``."""


@hookspec
def register_samplers(register):
    """Register samplers, i.e. generation strategies that own the loop: ``register(MySampler())``."""


@hookspec
def register_corpora(register):
    """Register corpus sources (``music21:bach``, file readers by suffix): ``register(CorpusSource(...))``."""


@hookspec
def register_styles(register):
    """Register named styles: ``register(Style(...))``."""


@hookspec
def register_writers(register):
    """Register output formats: ``register(Writer(...))``."""


@hookspec
def register_heads(register):
    """Register model output heads: ``register(type_name, factory)`` with ``factory(hidden_size, spec)``."""


@hookspec
def register_model_families(register):
    """Register model families: ``register(name, factory)`` with ``factory(model_config, heads)`` returning a
    module with the sequence-model protocol of ``composer.model.SequenceModel`` (``forward``, ``step``,
    ``initial_state``, ``parameter_groups``, ``head``); a checkpoint's ``model.family`` picks one."""


@hookspec
def register_commands(cli):
    """Add click commands to the ``composer`` command group (``composer.commands`` has the shared pieces)."""


@hookspec
def on_epoch_end(metrics):
    """Called on rank 0 after each validation with its metrics dict: at the end of every epoch, and every
    ``eval_every`` steps inside one when that is set (``metrics["epoch"]`` counts finished epochs)."""


@hookspec
def on_checkpoint_saved(path, metadata):
    """Called on rank 0 after a checkpoint file is written."""
