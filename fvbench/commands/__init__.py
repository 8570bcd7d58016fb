"""CLI commands, one module per area; each stays thin and calls the library. Plug-ins add their own commands with
:func:`register_command`."""

from __future__ import annotations

from typing import Any

from fvbench.errors import FvbenchError
from fvbench.plugins import Registry

# fvbench's own commands: name -> "module:attribute", imported when the command runs (a command whose module is
# absent is not listed). Plug-ins add theirs with register_command.
COMMANDS: dict[str, str] = {
    "generate": "fvbench.commands.generate:generate",
    "presets": "fvbench.commands.generate:presets",
    "convert-flashvideo": "fvbench.commands.convert:convert_flashvideo",
    "run": "fvbench.commands.run:run",
    "suites": "fvbench.commands.run:suites",
    "export": "fvbench.commands.run:export",
    "flops": "fvbench.commands.compute:flops",
    "bench": "fvbench.commands.compute:bench",
    "metrics": "fvbench.commands.metrics:metrics",
    "score": "fvbench.commands.metrics:score",
    "report": "fvbench.commands.report:report",
    "check": "fvbench.commands.report:check",
}
PLUGIN_COMMANDS: Registry[Any] = Registry("command")


def register_command(name: str, target: str, *, origin: str = "") -> None:
    """Add ``fvbench <name>``: ``target`` is ``"module:attribute"`` of a click command, imported when it runs. A
    plug-in cannot take the name of one of fvbench's own commands."""
    if name in COMMANDS:
        raise FvbenchError(f"command {name!r} is fvbench's own; {origin or 'a plug-in'} cannot register it")
    if ":" not in target:
        raise FvbenchError(f"command {name!r}: the target must be 'module:attribute', got {target!r}")
    PLUGIN_COMMANDS.register(name, target, origin=origin)
