"""Checkpoints: one safetensors file holding the weights and JSON metadata; loading never runs code.

Metadata (under the safetensors header key ``composer``): format version, model config, encoder name
and state, sampler defaults, description and provenance (corpus, its hash, steps, best validation loss,
project version, date, parent). Training-resume state lives beside a run in ``state.pt``, read with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

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
    return _read(path, weights=False)[0]


def _read(path: Path, weights: bool) -> tuple[dict, dict[str, torch.Tensor]]:
    """The checkpoint's metadata, checked, and (``weights``) its tensors, from one opening of the file."""
    path = Path(path)
    if not path.is_file():
        raise ComposerError(f"checkpoint not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
            meta = _checked_meta(path, header)
            try:
                tensors = {key: f.get_tensor(key) for key in f.keys()} if weights else {}
            except (SafetensorError, OSError, ValueError) as exc:
                raise ComposerError(f"{path} is damaged (cannot read its weights: {exc})") from None
    except (SafetensorError, OSError, ValueError) as exc:
        raise ComposerError(f"{path} is not a composer checkpoint (unreadable safetensors file: {exc})") from None
    return meta, tensors


def _checked_meta(path: Path, header: dict) -> dict:
    if META_KEY not in header:
        raise ComposerError(f"{path} is a safetensors file but not a composer checkpoint (no composer metadata)")
    try:
        meta = json.loads(header[META_KEY])
    except json.JSONDecodeError:
        raise ComposerError(f"{path} has corrupt composer metadata") from None
    version = meta.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise ComposerError(f"{path} has no valid checkpoint format version")
    if version > FORMAT_VERSION:
        raise ComposerError(
            f"{path} uses checkpoint format {version}, newer than this composer understands "
            f"({FORMAT_VERSION}); upgrade lstm-composer"
        )
    return meta


def load(path: Path) -> Checkpoint:
    meta, weights = _read(path, weights=True)
    return Checkpoint(Path(path), meta, weights)


def build_encoder(meta: dict, registry: Any) -> Encoder:
    info = meta["encoder"]
    encoder = registry.encoder(info["name"])(**info["state"].get("options", {}))
    encoder.load_state_dict(info["state"])
    return encoder


def load_model(path: Path, registry: Any, device: str | torch.device = "cpu") -> tuple[Any, Encoder, dict]:
    """Model (eval mode, on ``device``), encoder and metadata from a checkpoint file."""
    from composer.model import ModelConfig, build_model

    ckpt = load(path)
    encoder = build_encoder(ckpt.meta, registry)
    try:
        model = build_model(ModelConfig.from_dict(ckpt.meta["model"]), registry)
        model.load_state_dict(ckpt.weights)
    except (KeyError, ValueError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ComposerError(f"{path} does not match its model config: {first}") from None
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
    """Training-resume state; ``weights_only`` refuses anything that would run code when unpickled."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ComposerError(f"nothing to resume: {path} does not exist") from None
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ComposerError(f"cannot resume from {path}: {first}") from None
