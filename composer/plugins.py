"""The plugin manager: built-in plugins, then entry points of group ``composer``.

``COMPOSER_LOAD_PLUGINS`` is a comma-separated allowlist of installed (entry-point) plugins to load;
``''`` loads none; unset loads all. ``COMPOSER_PLUGINS_DIR`` (``composer --plugins-dir``) names a folder
whose ``*.py`` files and package folders load as plugins too (origin "file"). ``COMPOSER_TRACE_PLUGINS=1``
prints a line per hook call and the traceback of a plugin that fails. A plugin that fails to import or
raises while registering is skipped and reported by ``composer plugins``; everything else keeps working.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pluggy

from composer import hookspecs
from composer.api import ComposerError, CorpusSource, Encoder, Sampler, Style, Writer

# Built-in plugins: written exactly as third-party ones, loaded first and always. The core's own model
# heads register through the same hook.
DEFAULT_PLUGINS = (
    "composer.heads",
    "composer.model",
    "composer_samplers",
    "composer_midi",
    "composer_text",
    "composer_strokes",
    "composer_checkpoints",
)


def _class_key(obj: Any) -> str:
    if not (isinstance(obj, type) and issubclass(obj, Encoder)) or not obj.name or not obj.modality:
        raise TypeError(f"register_encoders expects an Encoder subclass with name and modality, got {obj!r}")
    return obj.name


def _typed_key(expected: type) -> Callable[[Any], Any]:
    def key(obj: Any) -> Any:
        if not isinstance(obj, expected) or not obj.name:
            raise TypeError(f"expected a named {expected.__name__}, got {obj!r}")
        return (obj.modality, obj.name) if isinstance(obj, Writer) else obj.name

    return key


def _named_factory(hook: str) -> Callable[[Any, Any], str]:
    def key(name: Any, factory: Any) -> str:
        if not isinstance(name, str) or not callable(factory):
            raise TypeError(f"{hook} expects register(name, factory), got {name!r}, {factory!r}")
        return name

    return key


@dataclass(frozen=True)
class Kind:
    """One kind of registered thing: its hook ``register_<table>``, its label in messages, and the key an
    object is registered under (the callback gets the object, or for heads and families a name and a factory)."""

    table: str
    label: str
    key: Callable[..., Any]
    hook: str = ""  # default: register_<table>

    @property
    def hook_name(self) -> str:
        return self.hook or f"register_{self.table}"


KINDS = (
    Kind("encoders", "encoder", _class_key),
    Kind("samplers", "sampler", _typed_key(Sampler)),
    Kind("corpora", "corpus source", _typed_key(CorpusSource)),
    Kind("styles", "style", _typed_key(Style)),
    Kind("writers", "writer", _typed_key(Writer)),
    Kind("heads", "head", _named_factory("register_heads")),
    Kind("families", "model family", _named_factory("register_model_families"), "register_model_families"),
)
KIND = {kind.table: kind for kind in KINDS}


@dataclass
class PluginInfo:
    name: str
    source: str  # "built-in", the distribution that provides the entry point, or the plugin file's path
    version: str = ""
    error: str = ""
    provides: dict[str, list[str]] = field(default_factory=dict)
    origin: str = ""  # "built-in", "entry point", "file" or "given" (load(extra=...)); default: from source
    hooks: list[str] = field(default_factory=list)  # the hooks the plugin implements

    def __post_init__(self) -> None:
        if not self.origin:
            self.origin = "built-in" if self.source == "built-in" else "entry point"


@dataclass
class Registry:
    pm: pluggy.PluginManager
    plugins: dict[str, PluginInfo] = field(default_factory=dict)
    encoders: dict[str, type[Encoder]] = field(default_factory=dict)
    samplers: dict[str, Sampler] = field(default_factory=dict)
    corpora: dict[str, CorpusSource] = field(default_factory=dict)
    styles: dict[str, Style] = field(default_factory=dict)
    writers: dict[tuple[str, str], Writer] = field(default_factory=dict)  # (modality, format)
    heads: dict[str, Any] = field(default_factory=dict)  # head type -> factory(hidden_size, spec)
    families: dict[str, Any] = field(default_factory=dict)  # model family -> factory(model_config, heads)
    owner: dict[tuple[str, Any], str] = field(default_factory=dict)  # (table, key) -> plugin name

    # -- lookups with one-line errors
    def encoder(self, name: str) -> type[Encoder]:
        return self.get("encoders", name)

    def sampler(self, name: str) -> Sampler:
        return self.get("samplers", name)

    def style(self, name: str) -> Style:
        return self.get("styles", name)

    def writer(self, modality: str, fmt: str) -> Writer:
        if (modality, fmt) not in self.writers:
            known = ", ".join(sorted(f for m, f in self.writers if m == modality)) or "none"
            raise ComposerError(f"unknown format '{fmt}' for {modality} output (available: {known})")
        return self.writers[(modality, fmt)]

    def get(self, table: str, name: str) -> Any:
        entries = getattr(self, table)
        if name not in entries:
            known = ", ".join(sorted(entries)) or "none"
            raise ComposerError(f"unknown {KIND[table].label} '{name}' (available: {known})")
        return entries[name]


def _shown(key: Any) -> str:
    return "/".join(key) if isinstance(key, tuple) else str(key)


def _register_all(reg: Registry, info: PluginInfo, plugin: Any) -> None:
    """Register the plugin with pluggy and call its registration hooks, through pluggy, for it alone; on any
    error, undo what it registered, unregister it and record the error."""
    added: list[tuple[str, Any]] = []

    def make_register(kind: Kind) -> Callable[..., None]:
        def register(*args: Any) -> None:
            key = kind.key(*args)
            value = args[-1]
            table = getattr(reg, kind.table)
            if key in table:
                raise ComposerError(
                    f"{kind.label} '{_shown(key)}' from plugin '{info.name}' clashes with the one from plugin "
                    f"'{reg.owner[(kind.table, key)]}'"
                )
            table[key] = value
            reg.owner[(kind.table, key)] = info.name
            added.append((kind.table, key))

        return register

    info.hooks = hook_names(plugin)
    others = [p for p in reg.pm.get_plugins() if p is not plugin]
    try:
        reg.pm.register(plugin, name=info.name)
        for kind in KINDS:
            caller = reg.pm.subset_hook_caller(kind.hook_name, remove_plugins=others)
            caller(register=make_register(kind))
    except Exception as exc:  # a broken plugin must not break the others
        for table, key in added:
            del getattr(reg, table)[key]
            del reg.owner[(table, key)]
        if reg.pm.is_registered(plugin):
            reg.pm.unregister(plugin)
        _fail(info, exc)
        return
    for table, key in added:
        info.provides.setdefault(table, []).append(_shown(key))


def hook_names(plugin: Any) -> list[str]:
    """The hooks ``plugin`` implements (functions marked with ``composer.hookimpl``), sorted."""
    names = set()
    for attr in dir(plugin):
        try:
            opts = getattr(getattr(plugin, attr, None), "composer_impl", None)
        except Exception:
            continue
        if isinstance(opts, dict):
            names.add(opts.get("specname") or attr)
    return sorted(names)


def _trace_calls(pm: pluggy.PluginManager) -> None:
    """With ``COMPOSER_TRACE_PLUGINS`` set: one line on stderr per hook call of each plugin."""

    def before(hook_name: str, hook_impls: list[Any], kwargs: dict[str, Any]) -> None:
        for impl in hook_impls:
            print(f"composer: plugin {impl.plugin_name}: {hook_name}", file=sys.stderr)

    def after(outcome: Any, hook_name: str, hook_impls: list[Any], kwargs: dict[str, Any]) -> None:
        pass

    pm.add_hookcall_monitoring(before, after)


def _import_file(path: Path) -> Any:
    """Import a plugin file ``NAME.py`` or package folder ``NAME/__init__.py`` under a private module name."""
    name = f"composer_file_plugin_{path.stem}"
    if path.is_dir():
        spec = importlib.util.spec_from_file_location(name, path / "__init__.py",
                                                      submodule_search_locations=[str(path)])
    else:
        spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def plugins_dir() -> Path | None:
    value = os.environ.get("COMPOSER_PLUGINS_DIR")
    return Path(value) if value else None


def _file_candidates(folder: Path) -> list[tuple[PluginInfo, Any]]:
    """Every ``*.py`` file and package folder in ``folder``, imported; a failure is recorded."""
    if not folder.is_dir():
        info = PluginInfo(str(folder), str(folder), origin="file")
        info.error = f"plugins folder {folder} does not exist"
        return [(info, None)]
    out: list[tuple[PluginInfo, Any]] = []
    for path in sorted(folder.iterdir()):
        is_file = path.suffix == ".py" and path.is_file()
        is_package = path.is_dir() and (path / "__init__.py").is_file()
        if path.name.startswith((".", "_")) or not (is_file or is_package):
            continue
        info = PluginInfo(path.stem, str(path), origin="file")
        try:
            out.append((info, _import_file(path)))
        except Exception as exc:
            _fail(info, exc)
            out.append((info, None))
    return out


def _fail(info: PluginInfo, exc: BaseException) -> None:
    info.error = _one_line(exc)
    if os.environ.get("COMPOSER_TRACE_PLUGINS"):
        print(f"composer: plugin {info.name} ({info.source}) failed:", file=sys.stderr)
        traceback.print_exception(exc, file=sys.stderr)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def _allowlist() -> set[str] | None:
    value = os.environ.get("COMPOSER_LOAD_PLUGINS")
    if value is None:
        return None
    return {part.strip() for part in value.split(",") if part.strip()}


def load(extra: list[Any] | tuple[Any, ...] = (), installed: bool = True) -> Registry:
    """A new registry: the built-ins, then (when ``installed``) the entry-point plugins allowed by
    ``COMPOSER_LOAD_PLUGINS`` and the files in ``COMPOSER_PLUGINS_DIR``, then the ``extra`` plugin objects
    (modules or objects with hook implementations; origin "given")."""
    pm = pluggy.PluginManager("composer")
    pm.add_hookspecs(hookspecs)
    if os.environ.get("COMPOSER_TRACE_PLUGINS"):
        _trace_calls(pm)
    reg = Registry(pm=pm)
    candidates: list[tuple[PluginInfo, Any]] = []
    for module_name in DEFAULT_PLUGINS:
        info = PluginInfo(module_name, "built-in")
        try:
            candidates.append((info, importlib.import_module(module_name)))
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue  # a built-in that this installation does not include
            _fail(info, exc)
            candidates.append((info, None))
        except Exception as exc:
            _fail(info, exc)
            candidates.append((info, None))
    allow = _allowlist()
    entry_points = importlib.metadata.entry_points(group="composer") if installed else ()
    for ep in entry_points:
        dist = ep.dist.name if ep.dist else ""
        if allow is not None and ep.name not in allow and dist not in allow:
            continue
        info = PluginInfo(ep.name, dist or "entry point", ep.dist.version if ep.dist else "")
        try:
            candidates.append((info, ep.load()))
        except Exception as exc:
            _fail(info, exc)
            candidates.append((info, None))
    folder = plugins_dir() if installed else None
    if folder is not None:
        candidates.extend(_file_candidates(folder))
    for plugin in extra:
        name = getattr(plugin, "__name__", None) or type(plugin).__name__
        candidates.append((PluginInfo(name, "given", origin="given"), plugin))
    for info, plugin in candidates:
        if info.name in reg.plugins:
            info.error = f"a plugin named '{info.name}' is already loaded"
            reg.plugins[f"{info.name} ({info.source})"] = info
            continue
        reg.plugins[info.name] = info
        if plugin is None:
            continue
        _register_all(reg, info, plugin)
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
