"""Plug-in seams: registries that fill themselves, lm-eval style, so the core names no model family or toy world.

A registry maps names to entries (a light object, or a ``"module:attr"`` string imported on first ``get``). The core
registers its own entries when the registry's module is imported; everything else registers itself when fvbench
*discovers plug-ins*, once, on the first lookup of any registry. Discovery imports, in this order:

1. the modules of the ``fvbench.plugins`` entry-point group (a third-party package declares
   ``[project.entry-points."fvbench.plugins"] mymodels = "mymodels.fvbench_plugin"`` in its pyproject);
2. the modules listed in ``$FVBENCH_PLUGINS`` (comma-separated), for a package that is on the path but not installed;
3. every in-tree ``plugin`` module: ``fvbench/<pkg>/plugin.py`` and ``fvbench/families/<family>.py``, found by scanning
   the package, so the core imports none of them by name.

A plug-in module registers through the registries' ``register`` functions and must stay light to import (no torch at
module level): listing presets or metrics imports every plug-in.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import threading
from collections.abc import Iterator, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any, Generic, TypeVar

from fvbench.errors import FvbenchError, UnknownNameError

ENTRY_POINT_GROUP = "fvbench.plugins"
PLUGINS_ENV = "FVBENCH_PLUGINS"
T = TypeVar("T")

_lock = threading.RLock()
_discovered = False
_discovering = False
_loaded: list[str] = []


def _in_tree_modules() -> list[str]:
    root = Path(__file__).resolve().parent
    mods = [f"fvbench.{m.name}.plugin" for m in pkgutil.iter_modules([str(root)])
            if m.ispkg and (root / m.name / "plugin.py").is_file()]
    families = root / "families"
    if families.is_dir():
        mods += [f"fvbench.families.{m.name}" for m in pkgutil.iter_modules([str(families)]) if not m.name.startswith("_")]
    return sorted(mods)


def plugin_modules() -> list[str]:
    """The modules discovery imports, in order: entry points, ``$FVBENCH_PLUGINS``, in-tree plug-ins."""
    mods = [ep.value for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)]
    mods += [m.strip() for m in os.environ.get(PLUGINS_ENV, "").split(",") if m.strip()]
    mods += _in_tree_modules()
    return list(dict.fromkeys(mods))


def discover() -> list[str]:
    """Import every plug-in module once (later calls return at once); returns the modules imported."""
    global _discovered, _discovering
    with _lock:
        if _discovered or _discovering:
            return list(_loaded)
        _discovering = True
        try:
            for mod in plugin_modules():
                target = mod.split(":")[0]  # an entry point may name module:attr; importing the module registers
                try:
                    importlib.import_module(target)
                except Exception as e:  # a broken plug-in names itself; fvbench does not guess around it
                    raise FvbenchError(f"plug-in {target!r} failed to import: {type(e).__name__}: "
                                       f"{(str(e).strip().splitlines() or [''])[0][:300]}") from e
                _loaded.append(target)
            _discovered = True
        finally:
            _discovering = False
        return list(_loaded)


def resolve(target: str) -> Any:
    module, _, attr = target.partition(":")
    obj = importlib.import_module(module)
    for part in attr.split(".") if attr else ():
        obj = getattr(obj, part)
    return obj


class Registry(Mapping[str, T], Generic[T]):
    """Names -> entries of one kind (``kind`` names it in errors). Lookups discover plug-ins first.

    ``register(name, entry)`` adds an entry (a ``"module:attr"`` string is imported on ``get``); registering a name
    twice is an error unless ``replace=True`` (a plug-in that overrides a built-in on purpose).
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Any] = {}
        self._origin: dict[str, str] = {}

    def register(self, name: str, entry: T | str, *, replace: bool = False, origin: str = "") -> None:
        with _lock:
            if name in self._entries and not replace:
                raise FvbenchError(f"{self.kind} {name!r} is registered twice ({self._origin[name] or 'fvbench'} "
                                   f"and {origin or 'fvbench'})")
            self._entries[name] = entry
            self._origin[name] = origin

    def unregister(self, name: str) -> None:
        """Remove ``name`` if registered (a test's temporary entry; a plug-in withdrawing one)."""
        with _lock:
            self._entries.pop(name, None)
            self._origin.pop(name, None)

    def origin(self, name: str) -> str:
        """Who registered ``name`` ('' for fvbench itself)."""
        discover()
        return self._origin.get(name, "")

    def get_entry(self, name: str) -> T:
        """The entry, with a ``"module:attr"`` string imported; an unknown name lists the known ones."""
        discover()
        if name not in self._entries:
            raise UnknownNameError(self.kind, name, sorted(self._entries))
        entry = self._entries[name]
        if isinstance(entry, str) and ":" in entry:
            entry = resolve(entry)
            self._entries[name] = entry
        return entry

    def __getitem__(self, name: str) -> T:
        discover()
        if name not in self._entries:
            raise KeyError(name)
        return self.get_entry(name)

    def __contains__(self, name: object) -> bool:
        discover()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        discover()
        return iter(list(self._entries))

    def __len__(self) -> int:
        discover()
        return len(self._entries)
