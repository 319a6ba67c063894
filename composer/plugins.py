"""The plugin manager: built-in plugins, then entry points of group ``composer``.

``COMPOSER_LOAD_PLUGINS`` is a comma-separated allowlist of installed (entry-point) plugins to load;
``''`` loads none; unset loads all. A plugin that fails to import or raises while registering is
skipped and reported by ``composer plugins``; everything else keeps working.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import traceback
from dataclasses import dataclass, field
from typing import Any

import pluggy

from composer import hookspecs, model
from composer.api import ComposerError, CorpusSource, Encoder, Sampler, Style, Writer

# Built-in plugins: written exactly as third-party ones, loaded first and always.
DEFAULT_PLUGINS = (
    "composer_samplers",
    "composer_midi",
    "composer_text",
    "composer_strokes",
    "composer_checkpoints",
)

KINDS = ("encoders", "samplers", "corpora", "styles", "writers", "heads")


@dataclass
class PluginInfo:
    name: str
    source: str  # "built-in" or the distribution that provides the entry point
    version: str = ""
    error: str = ""
    provides: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class Registry:
    pm: pluggy.PluginManager
    plugins: dict[str, PluginInfo] = field(default_factory=dict)
    encoders: dict[str, type[Encoder]] = field(default_factory=dict)
    samplers: dict[str, Sampler] = field(default_factory=dict)
    corpora: dict[str, CorpusSource] = field(default_factory=dict)
    styles: dict[str, Style] = field(default_factory=dict)
    writers: dict[tuple[str, str], Writer] = field(default_factory=dict)  # (modality, format)
    heads: dict[str, Any] = field(default_factory=dict)
    owner: dict[tuple[str, Any], str] = field(default_factory=dict)  # (kind, key) -> plugin name

    # -- lookups with one-line errors
    def encoder(self, name: str) -> type[Encoder]:
        return self._get("encoders", name, "encoder")

    def sampler(self, name: str) -> Sampler:
        return self._get("samplers", name, "sampler")

    def style(self, name: str) -> Style:
        return self._get("styles", name, "style")

    def writer(self, modality: str, fmt: str) -> Writer:
        if (modality, fmt) not in self.writers:
            known = ", ".join(sorted(f for m, f in self.writers if m == modality)) or "none"
            raise ComposerError(f"unknown format '{fmt}' for {modality} output (available: {known})")
        return self.writers[(modality, fmt)]

    def _get(self, kind: str, name: str, label: str) -> Any:
        table = getattr(self, kind)
        if name not in table:
            known = ", ".join(sorted(table)) or "none"
            raise ComposerError(f"unknown {label} '{name}' (available: {known})")
        return table[name]


def _key(kind: str, obj: Any) -> Any:
    if kind == "encoders":
        if not (isinstance(obj, type) and issubclass(obj, Encoder)) or not obj.name or not obj.modality:
            raise TypeError(f"register_encoders expects an Encoder subclass with name and modality, got {obj!r}")
        return obj.name
    if kind == "writers":
        return (obj.modality, obj.name)
    expected = {"samplers": Sampler, "corpora": CorpusSource, "styles": Style}[kind]
    if not isinstance(obj, expected):
        raise TypeError(f"register_{kind} expects {expected.__name__}, got {obj!r}")
    return obj.name


def _register_all(reg: Registry, info: PluginInfo, plugin: Any) -> None:
    """Run one plugin's registration hooks; on any error, undo what it registered and record the error."""
    added: list[tuple[str, Any]] = []

    def make_register(kind: str):
        def register(obj: Any, factory: Any = None) -> None:
            if kind == "heads":
                key, value = obj, factory
            else:
                key, value = _key(kind, obj), obj
            table = getattr(reg, kind)
            if kind == "heads" and key in model.HEADS and model.HEADS[key] is not value and key not in table:
                raise ComposerError(f"head '{key}' from plugin '{info.name}' clashes with the built-in one")
            if key in table:
                shown = "/".join(key) if isinstance(key, tuple) else key
                raise ComposerError(
                    f"{kind[:-1]} '{shown}' from plugin '{info.name}' clashes with the one from plugin "
                    f"'{reg.owner[(kind, key)]}'"
                )
            table[key] = value
            reg.owner[(kind, key)] = info.name
            added.append((kind, key))

        return register

    try:
        for kind in KINDS:
            hook = getattr(plugin, f"register_{kind}", None)
            if hook is not None:
                hook(register=make_register(kind))
    except Exception as exc:  # a broken plugin must not break the others
        for kind, key in added:
            del getattr(reg, kind)[key]
            del reg.owner[(kind, key)]
        info.error = _one_line(exc)
        if os.environ.get("COMPOSER_TRACE_PLUGINS"):
            traceback.print_exc()
        return
    for kind, key in added:
        if kind == "heads":
            model.HEADS[key] = reg.heads[key]
        info.provides.setdefault(kind, []).append("/".join(key) if isinstance(key, tuple) else key)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def _allowlist() -> set[str] | None:
    value = os.environ.get("COMPOSER_LOAD_PLUGINS")
    if value is None:
        return None
    return {part.strip() for part in value.split(",") if part.strip()}


def load() -> Registry:
    pm = pluggy.PluginManager("composer")
    pm.add_hookspecs(hookspecs)
    reg = Registry(pm=pm)
    candidates: list[tuple[PluginInfo, Any]] = []
    for module_name in DEFAULT_PLUGINS:
        info = PluginInfo(module_name, "built-in")
        try:
            candidates.append((info, importlib.import_module(module_name)))
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue  # a built-in that this installation does not include
            info.error = _one_line(exc)
            candidates.append((info, None))
        except Exception as exc:
            info.error = _one_line(exc)
            candidates.append((info, None))
    allow = _allowlist()
    for ep in importlib.metadata.entry_points(group="composer"):
        dist = ep.dist.name if ep.dist else ""
        if allow is not None and ep.name not in allow and dist not in allow:
            continue
        info = PluginInfo(ep.name, dist or "entry point", ep.dist.version if ep.dist else "")
        try:
            candidates.append((info, ep.load()))
        except Exception as exc:
            info.error = _one_line(exc)
            candidates.append((info, None))
    for info, plugin in candidates:
        if info.name in reg.plugins:
            info.error = f"a plugin named '{info.name}' is already loaded"
            reg.plugins[f"{info.name} ({info.source})"] = info
            continue
        reg.plugins[info.name] = info
        if plugin is None:
            continue
        _register_all(reg, info, plugin)
        if not info.error:
            pm.register(plugin, name=info.name)
    _add_user_styles(reg)
    return reg


def _add_user_styles(reg: Registry) -> None:
    """Styles made by ``composer finetune`` in the user data folder."""
    from composer.checkpoint import user_styles

    for style in user_styles():
        if style.name not in reg.styles:
            reg.styles[style.name] = style
            reg.owner[("styles", style.name)] = "user"


_registry: Registry | None = None


def get_registry() -> Registry:
    """The process-wide registry, loaded on first use."""
    global _registry
    if _registry is None:
        _registry = load()
    return _registry


def reset() -> None:
    """Forget the loaded plugins (tests change the environment and load again)."""
    global _registry
    _registry = None
