"""Checkpoints: one safetensors file holding the weights and JSON metadata; loading never runs code.

Metadata (under the safetensors header key ``composer``): format version, model config, encoder name
and state, sampler defaults, description and provenance (corpus, its hash, steps, best validation loss,
project version, date, parent). Training-resume state lives beside a run in ``state.pt``, read with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import tempfile
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch.overrides import TorchFunctionMode

from composer.api import ComposerError, Encoder, Style

FORMAT_VERSION = 1
META_KEY = "composer"


@dataclass
class Checkpoint:
    path: Path
    meta: dict
    weights: dict[str, torch.Tensor] | None = None


def composer_home() -> Path:
    """The user data folder: ``COMPOSER_HOME`` or the platform's user data directory."""
    if os.environ.get("COMPOSER_HOME"):
        return Path(os.environ["COMPOSER_HOME"]).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir("composer", appauthor=False))


def atomic_write(path: Path, write: Any) -> None:
    """Call ``write(tmp_path)`` then rename over ``path``, so a half-written file never replaces it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes the file private; the result is an ordinary file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save(path: Path, weights: dict[str, torch.Tensor], meta: dict) -> None:
    meta = {"format_version": FORMAT_VERSION, **meta}
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in weights.items()}
    header = {META_KEY: json.dumps(meta, sort_keys=True)}
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=header))


def read_meta(path: Path) -> dict:
    """The metadata alone (reads the header, not the weights)."""
    return read_header(path)[0]


@dataclass(frozen=True)
class TensorInfo:
    """One stored tensor as the file's header describes it."""

    dtype: str  # safetensors' name: F32, F16, BF16, I64, BOOL, ...
    shape: tuple[int, ...]


MAX_HEADER_BYTES = 16 * 2**20  # real headers hold a few KB; a crafted one must not be read into memory whole
MAX_TENSORS = 4096  # a 1,000-layer stack holds about 4,000; more is a crafted file, not a model
FLOAT_DTYPES = ("F32", "F16", "BF16", "F64")


def read_header(path: Path) -> tuple[dict, dict[str, TensorInfo]]:
    """The checked metadata and each tensor's dtype and shape, from the file's JSON header alone (bounded
    in size: nothing else of the file is read)."""
    path = Path(path)
    if not path.is_file():
        raise ComposerError(f"checkpoint not found: {path}")
    unreadable = f"{path} is not a composer checkpoint (unreadable safetensors header)"
    try:
        with path.open("rb") as f:
            prefix = f.read(8)
            size = int.from_bytes(prefix, "little") if len(prefix) == 8 else -1
            if size > MAX_HEADER_BYTES:
                raise ComposerError(f"{path} is not a composer checkpoint (its header claims {size:,} bytes; "
                                    f"composer reads at most {MAX_HEADER_BYTES:,})")
            raw = f.read(size) if size > 0 else b""
        header = json.loads(raw) if len(raw) == size else None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise ComposerError(unreadable) from None
    if not isinstance(header, dict):
        raise ComposerError(unreadable)
    metadata = header.pop("__metadata__", None) or {}
    tensors = {}
    for name, entry in header.items():
        shape = entry.get("shape") if isinstance(entry, dict) else None
        if not (isinstance(shape, list) and all(type(d) is int and d >= 0 for d in shape)
                and isinstance(entry.get("dtype"), str)):
            raise ComposerError(unreadable)
        tensors[name] = TensorInfo(entry["dtype"], tuple(shape))
    if len(tensors) > MAX_TENSORS:
        raise ComposerError(f"{path} holds {len(tensors):,} tensors; composer loads at most {MAX_TENSORS:,}")
    if not isinstance(metadata, dict):
        raise ComposerError(unreadable)
    return _checked_meta(path, metadata), tensors


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    try:
        with safe_open(str(path), framework="pt") as f:
            try:
                return {key: f.get_tensor(key) for key in f.keys()}
            except (SafetensorError, OSError, ValueError) as exc:
                raise ComposerError(f"{path} is damaged (cannot read its weights: {exc})") from None
    except (SafetensorError, OSError, ValueError) as exc:
        raise ComposerError(f"{path} is not a composer checkpoint (unreadable safetensors file: {exc})") from None


def _checked_meta(path: Path, header: dict) -> dict:
    if META_KEY not in header:
        raise ComposerError(f"{path} is a safetensors file but not a composer checkpoint (no composer metadata)")
    try:
        meta = json.loads(header[META_KEY])
    except (TypeError, json.JSONDecodeError, RecursionError):
        raise ComposerError(f"{path} has corrupt composer metadata") from None
    if not isinstance(meta, dict):
        raise ComposerError(f"{path} has corrupt composer metadata")
    version = meta.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise ComposerError(f"{path} has no valid checkpoint format version")
    if version > FORMAT_VERSION:
        raise ComposerError(
            f"{path} uses checkpoint format {version}, newer than this composer understands "
            f"({FORMAT_VERSION}); upgrade lstm-composer"
        )
    return meta


def load(path: Path, registry: Any = None) -> Checkpoint:
    """Metadata and weights. With a ``registry``, the weights are first checked against the model config
    (see :func:`check_tensors`) and then for NaN and infinite values, so that a crafted or damaged file is
    refused in one line before anything the size of its config is allocated."""
    meta, tensors = read_header(path)
    if registry is not None:
        check_tensors(Path(path), meta, tensors, registry)
    weights = _read_weights(Path(path))
    if registry is not None:
        for name, tensor in weights.items():
            if not torch.isfinite(tensor).all():
                raise ComposerError(f"checkpoint {path}: tensor '{name}' holds NaN or infinite values "
                                    "(a diverged or damaged model)")
    return Checkpoint(Path(path), meta, weights)


SIZE_FIELDS = ("vocab_size", "input_dim", "embedding_size", "hidden_size", "cond_size", "cond_classes",
               "latent_size", "encoder_size")


def check_tensors(path: Path, meta: dict, tensors: dict[str, TensorInfo], registry: Any) -> None:
    """Refuse, in one line naming what is wrong, a checkpoint whose tensors (from its header) are not the
    ones its model config needs: names, shapes, floating-point dtypes. The config is bounded by what is stored
    before the model is built, and it is built on the ``meta`` device, which allocates nothing."""
    from composer.model import ModelConfig, build_model

    if not isinstance(meta.get("model"), dict):
        raise ComposerError(f"checkpoint {path} has no model config")
    info = meta.get("encoder")
    if not (isinstance(info, dict) and isinstance(info.get("name"), str) and isinstance(info.get("state"), dict)):
        raise ComposerError(f"checkpoint {path} does not name its encoder and its state")
    try:
        config = ModelConfig.from_dict(meta["model"])
    except (TypeError, ValueError) as exc:
        raise ComposerError(f"checkpoint {path}: {exc}") from None
    stored = sum(math.prod(t.shape) for t in tensors.values())
    defaults = ModelConfig()
    for name in SIZE_FIELDS:  # a size that makes no tensor that large is not the one these weights were made with
        value = getattr(config, name)
        if value != getattr(defaults, name) and value > stored:
            raise ComposerError(f"checkpoint {path}: its config's {name} {value:,} is more than all its tensors "
                                f"hold ({stored:,} values)")
    try:
        with torch.device("meta"), _ShapesOnly():
            counts = [len(build_model(replace(config, layers=n), registry).state_dict()) for n in (1, 2)]
            needed = counts[0] + (config.layers - 1) * (counts[1] - counts[0])
            if needed != len(tensors):  # before building all the layers: a million take minutes even here
                raise ComposerError(f"checkpoint {path}: its config's {config.layers:,} layers need {needed:,} "
                                    f"tensors; the file holds {len(tensors):,}")
            expected = build_model(config, registry).state_dict()
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ComposerError(f"checkpoint {path}: {_first_line(exc)}") from None
    for name, want in expected.items():
        if name not in tensors:
            raise ComposerError(f"checkpoint {path}: tensor '{name}', which its config needs, is missing")
        got = tensors[name]
        if list(got.shape) != list(want.shape):
            raise ComposerError(f"checkpoint {path}: tensor '{name}' has shape {list(got.shape)}, the config needs "
                                f"{list(want.shape)}")
        if want.is_floating_point() and got.dtype not in FLOAT_DTYPES:
            raise ComposerError(f"checkpoint {path}: tensor '{name}' is stored as {got.dtype}; the model needs "
                                f"floating-point weights ({', '.join(FLOAT_DTYPES)})")
    extra = sorted(set(tensors) - set(expected))
    if extra:
        raise ComposerError(f"checkpoint {path}: tensor '{extra[0]}' is not part of the model its config describes")


class _ShapesOnly(TorchFunctionMode):
    """Modules built for their shapes alone skip random initialisation: on the ``meta`` device ``normal_``
    runs through torch's Python reference, whose first call imports the compiler (seconds)."""

    RANDOM = frozenset({"normal_", "uniform_", "trunc_normal_", "exponential_", "bernoulli_", "random_"})

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if getattr(func, "__name__", "") in self.RANDOM:  # nn.init's functions and the Tensor methods they call
            return args[0] if args else kwargs["tensor"]
        return func(*args, **kwargs)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def build_encoder(meta: dict, registry: Any) -> Encoder:
    info = meta["encoder"]
    options = info["state"].get("options", {})
    if not isinstance(options, dict):
        raise ComposerError(f"the checkpoint's options for encoder '{info['name']}' are damaged")
    encoder = registry.encoder(info["name"])(**options)
    try:
        encoder.load_state_dict(info["state"])
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        raise ComposerError(f"the checkpoint's state for encoder '{info['name']}' is damaged: "
                            f"{_first_line(exc)}") from None
    return encoder


def load_model(path: Path, registry: Any, device: str | torch.device = "cpu") -> tuple[Any, Encoder, dict]:
    """Model (eval mode, on ``device``), encoder and metadata from a checkpoint file."""
    from composer.model import ModelConfig, build_model

    ckpt = load(path, registry)
    encoder = build_encoder(ckpt.meta, registry)
    config = ModelConfig.from_dict(ckpt.meta["model"])
    vocab = encoder.head.spec().get("vocab_size")
    if config.input == "tokens" and vocab != config.vocab_size:
        raise ComposerError(f"checkpoint {path}: its encoder has {vocab} tokens, its model {config.vocab_size}")
    model = build_model(config, registry)
    model.load_state_dict(ckpt.weights)
    model.to(device).eval()
    return model, encoder, ckpt.meta


def style_from_checkpoint(path: Path, source: str) -> Style:
    meta = read_meta(path)
    return Style(
        name=Path(path).stem,
        checkpoint=Path(path),
        description=meta.get("description", ""),
        defaults=meta.get("sampler_defaults", {}),
        source=source,
    )


def user_styles() -> list[Style]:
    """Styles saved by ``composer finetune`` under ``COMPOSER_HOME/styles``; unreadable files are skipped."""
    folder = composer_home() / "styles"
    styles = []
    for path in sorted(folder.glob("*.safetensors")) if folder.is_dir() else []:
        try:
            styles.append(style_from_checkpoint(path, source="user"))
        except ComposerError:
            continue
    return styles


def save_state(path: Path, state: dict) -> None:
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_state(path: Path) -> dict:
    """Training-resume state; ``weights_only`` refuses anything that would run code when unpickled. Torch's
    own advice on such a refusal (load it with ``weights_only=False``) is not passed on: one line says why."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ComposerError(f"nothing to resume: {path} does not exist") from None
    except pickle.UnpicklingError as exc:
        if str(exc).startswith("Weights only load failed"):
            raise ComposerError(f"cannot resume from {path}: it holds objects other than tensors and plain values, "
                                "which composer never unpickles (not a state.pt that composer wrote)") from None
        raise ComposerError(f"cannot resume from {path}: it is damaged ({_first_line(exc)})") from None
    except Exception as exc:
        raise ComposerError(f"cannot resume from {path}: it is damaged or not a training state "
                            f"({type(exc).__name__}: {_first_line(exc)})") from None
