"""fvbench's command line: thin. It parses, calls the library, prints. Commands are loaded lazily by name."""

from __future__ import annotations

import importlib
import importlib.util
import sys
import warnings

import click

from fvbench.commands import COMMANDS, PLUGIN_COMMANDS
from fvbench.errors import FvbenchError, FvbenchWarning
from fvbench.textsafe import printable


class LazyGroup(click.Group):
    """A click group that imports a command's module only when that command runs (fast start-up)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        own = [n for n, target in COMMANDS.items() if importlib.util.find_spec(target.split(":")[0]) is not None]
        return own + list(PLUGIN_COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None:  # a plug-in's command: discovery runs only for a name fvbench does not have
            return PLUGIN_COMMANDS.get(name)
        if importlib.util.find_spec(target.split(":")[0]) is None:
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
