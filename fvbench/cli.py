"""fvbench's command line: thin. It parses, calls the library, prints. Commands are loaded lazily by name."""

from __future__ import annotations

import importlib
import importlib.util
import sys
import warnings

import click

from fvbench.errors import FvbenchError, FvbenchWarning
from fvbench.textsafe import printable

# name -> "module:attribute". A command whose module is absent is not listed.
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
    "shapesworld": "fvbench.commands.shapesworld:shapesworld",
}


class LazyGroup(click.Group):
    """A click group that imports a command's module only when that command runs (fast start-up)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [n for n, target in COMMANDS.items() if importlib.util.find_spec(target.split(":")[0]) is not None]

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None or name not in self.list_commands(ctx):
            return None
        module, attr = target.split(":")
        return getattr(importlib.import_module(module), attr)


@click.group(cls=LazyGroup)
@click.version_option(package_name="fvbench")
def cli() -> None:
    """fvbench: FlashVideo two-stage generation vs single-stage DiT baselines, measured."""


def _show_warning(message, category, filename, lineno, file=None, line=None, _default=warnings.showwarning) -> None:
    """fvbench's own warnings as one ``warning:`` line; any other warning as Python prints it."""
    if issubclass(category, FvbenchWarning):
        click.echo(f"warning: {printable(message)}", err=True)
    else:
        _default(message, category, filename, lineno, file, line)


def main(argv: list[str] | None = None) -> int:
    """Entry point: user errors are one line on stderr and exit status 2."""
    with warnings.catch_warnings():
        warnings.simplefilter("always", FvbenchWarning)
        warnings.showwarning = _show_warning
        return _main(argv)


def _main(argv: list[str] | None) -> int:
    try:
        rv = cli.main(args=argv, prog_name="fvbench", standalone_mode=False)
        if isinstance(rv, int) and not isinstance(rv, bool):  # click returns an Exit's code in this mode
            return rv
    except FvbenchError as e:
        click.echo(f"error: {printable(e)}", err=True)
        return 2
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except click.ClickException as e:
        e.show()
        return e.exit_code
    except click.exceptions.Exit as e:
        return e.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())


def entry() -> None:
    """Console-script wrapper around :func:`main`."""
    sys.exit(main())
