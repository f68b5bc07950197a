"""Plug-ins: task families and chat formats from the user's own modules, with no edit to forgerl.

A plug-in is any module that registers something when imported (`register_env(Family(...))`,
`register_format(MyFormat)`). It reaches forgerl in one of four ways, all loaded by
`load_plugins`:

* `--plugin MODULE` on the commands that take `--env` or `--format` (a module name, or a path to
  a `.py` file), and `plugins = [...]` in a training config;
* the `FORGERL_PLUGINS` environment variable (comma-separated, same forms), so processes started
  without those options (the gateway, `serve`, worker processes) see the same plug-ins;
* installed entry points in the groups `forgerl.envs` and `forgerl.formats` (declared in the
  pyproject.toml of the user's package). An entry point may name a module (imported), a function
  (called with no arguments), a `Family` (registered) or a `ChatFormat` subclass (registered).

Each module and the entry-point scan load once per process. Why the registries call this lazily on
a miss (`family_info`, `get_format`): a name only a plug-in knows must resolve wherever it is used,
without every code path having to remember to load plug-ins first.

Failures: a module the user named that does not import is an error (one line naming it and the
cause: the user asked for it). An installed entry point that fails is a warning naming it, and
the other plug-ins still load: one broken package in the environment must not stop every run.
"""

from __future__ import annotations

import importlib
import importlib.metadata as metadata
import importlib.util
import logging
import os
import sys
import threading
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from forgerl.errors import ConfigError

__all__ = ["ENTRY_POINT_GROUPS", "PLUGINS_ENV_VAR", "PLUGIN_OPTION_HELP", "PluginError", "PluginWarning", "load_cli_plugins",
           "load_plugins", "plugin_hint"]

log = logging.getLogger("forgerl.plugins")

ENTRY_POINT_GROUPS = ("forgerl.envs", "forgerl.formats")
PLUGINS_ENV_VAR = "FORGERL_PLUGINS"


class PluginError(ConfigError):
    """A plug-in the user named explicitly (--plugin, plugins = [...], FORGERL_PLUGINS) cannot be loaded."""


class PluginWarning(UserWarning):
    """An installed entry point failed to load; the other plug-ins were loaded."""


@dataclass
class _State:
    """What this process has loaded already: plug-in specs, and whether entry points were scanned."""

    modules: dict[str, ModuleType] = field(default_factory=dict)
    entry_points_loaded: bool = False


PLUGIN_OPTION_HELP = ("Module that registers your own task family or chat format: a module name or a path to a .py "
                      "file (repeatable; also FORGERL_PLUGINS and entry points, see docs/environments.md).")

_STATE = _State()
_LOCK = threading.RLock()  # a plug-in may itself look a name up while loading: re-entrant


def plugin_hint() -> str:
    """The sentence appended to "unknown family / format" errors: how to make a name known."""
    return (f"a family or format from your own package: pass --plugin MODULE (a module name or a .py path), "
            f"set plugins = [...] in the training config or {PLUGINS_ENV_VAR}=MODULE, or declare an entry "
            f"point in group {ENTRY_POINT_GROUPS[0]!r} / {ENTRY_POINT_GROUPS[1]!r} (docs/environments.md)")


def env_var_plugins() -> list[str]:
    """The plug-in specs named in FORGERL_PLUGINS (comma-separated; blanks ignored)."""
    return [spec.strip() for spec in os.environ.get(PLUGINS_ENV_VAR, "").split(",") if spec.strip()]


def load_plugins(modules: Sequence[str] = ()) -> list[str]:
    """Import `modules`, those in FORGERL_PLUGINS, and every installed entry point of the groups
    `forgerl.envs` and `forgerl.formats`, each once per process. Returns the specs loaded by this
    call. Raises PluginError naming the first named module that cannot be imported."""
    if isinstance(modules, str):  # a single name passed by mistake would load its characters
        modules = [modules]
    loaded = []
    with _LOCK:
        for spec in [*modules, *env_var_plugins()]:
            if spec not in _STATE.modules:
                _STATE.modules[spec] = _import_spec(spec)
                loaded.append(spec)
        if not _STATE.entry_points_loaded:
            _STATE.entry_points_loaded = True  # set first: a plug-in that looks names up must not recurse
            loaded.extend(_load_entry_points())
    return loaded


def load_cli_plugins(modules: Sequence[str]) -> None:
    """`load_plugins` for a command's `--plugin` values: a failure is a usage error on --plugin."""
    try:
        load_plugins(modules)
    except PluginError as exc:
        import typer

        raise typer.BadParameter(str(exc), param_hint="--plugin") from None


def _import_spec(spec: str) -> ModuleType:
    """A module by dotted name, or by path when `spec` ends in .py or names a path."""
    if spec.endswith(".py") or os.sep in spec or "/" in spec:
        return _import_path(Path(spec))
    try:
        return importlib.import_module(spec)
    except ModuleNotFoundError as exc:
        if exc.name is None or not (spec == exc.name or spec.startswith(exc.name + ".")):
            raise PluginError(f"plugin {spec!r} failed while importing: {type(exc).__name__}: {exc}") from exc
        raise PluginError(f"plugin {spec!r} could not be imported ({type(exc).__name__}: {exc}); check the module "
                          "name, and that its package is installed or its folder is on PYTHONPATH") from exc
    except Exception as exc:  # noqa: BLE001 — the user's module raised while registering: say which
        raise PluginError(f"plugin {spec!r} failed while importing: {type(exc).__name__}: {exc}") from exc


def _import_path(path: Path) -> ModuleType:
    """Import a .py file as module `forgerl_plugin_<stem>` (kept in sys.modules, so pickling and
    a second import see the same module and nothing registers twice)."""
    if not path.is_file():
        raise PluginError(f"plugin file {str(path)!r} does not exist; give a path to a .py file or a module name")
    name = f"forgerl_plugin_{path.stem}"
    resolved = str(path.resolve())
    existing = sys.modules.get(name)
    if existing is not None and getattr(existing, "__file__", None) == resolved:
        return existing
    module_spec = importlib.util.spec_from_file_location(name, resolved)
    if module_spec is None or module_spec.loader is None:
        raise PluginError(f"plugin file {str(path)!r} cannot be loaded as a Python module")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    try:
        module_spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 — one line naming the file and the cause
        del sys.modules[name]
        raise PluginError(f"plugin file {str(path)!r} failed while importing: {type(exc).__name__}: {exc}") from exc
    return module


def _entry_points(group: str) -> Iterable[metadata.EntryPoint]:
    return metadata.entry_points(group=group)


def _load_entry_points() -> list[str]:
    """Load every entry point of both groups; a failing one is warned about and skipped."""
    loaded = []
    for group in ENTRY_POINT_GROUPS:
        for entry_point in _entry_points(group):
            label = f"{group}:{entry_point.name} ({entry_point.value})"
            try:
                _register(entry_point.load())
            except Exception as exc:  # noqa: BLE001 — one broken package must not stop the others
                message = (f"forgerl plug-in entry point {label} failed to load and was skipped "
                           f"({type(exc).__name__}: {exc}); the other plug-ins were loaded")
                log.warning(message)
                warnings.warn(message, PluginWarning, stacklevel=3)
                continue
            loaded.append(label)
    return loaded


_REGISTRARS: list[Callable[[Any], bool]] = []
"""Registries that accept objects an entry point may name (a Family, a ChatFormat class): each takes
the object and says whether it was one of theirs. chat.base and envs.base add theirs when imported,
so this module imports neither (they import it: it is the lower layer)."""


def add_registrar(registrar: Callable[[Any], bool]) -> None:
    """Let `registrar` register objects that entry points name (see _REGISTRARS)."""
    _REGISTRARS.append(registrar)


def _register(obj: Any) -> None:
    """What an entry point names: a module (registered on import), an object a registry accepts (a
    Family, a ChatFormat class: the module that defines it imported its registry), or a function
    called with no arguments."""
    if isinstance(obj, ModuleType):
        return
    if any(registrar(obj) for registrar in _REGISTRARS):
        return
    if callable(obj):
        obj()
    else:
        raise ConfigError(f"an entry point must name a module, a Family, a ChatFormat class or a function; "
                          f"got {type(obj).__name__}")


def load_run_plugins(plugins: Sequence[str]) -> None:
    """A training run's plug-ins (`plugins = [...]`, `--plugin`): imported here and named in
    FORGERL_PLUGINS, so that processes the run starts (a remote engine, rollout workers) register
    the same families and formats."""
    load_plugins(plugins)
    if plugins:
        inherited = [p.strip() for p in os.environ.get(PLUGINS_ENV_VAR, "").split(",") if p.strip()]
        os.environ[PLUGINS_ENV_VAR] = ",".join(dict.fromkeys([*inherited, *plugins]))
