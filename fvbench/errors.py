"""User-facing errors: one line, no traceback, non-zero exit from the CLI."""

from __future__ import annotations


class FvbenchError(Exception):
    """An error caused by the user's input or environment (bad name, bad value, missing file).

    The CLI prints ``error: <message>`` on one line and exits with status 2.
    """


class MissingWeightsError(FvbenchError):
    """A weight file or folder a preset or metric needs is not on local disk."""


class UnknownNameError(FvbenchError):
    """A registry lookup failed; the message lists the known names."""

    def __init__(self, kind: str, name: str, known: list[str]):
        self.kind, self.name, self.known = kind, name, sorted(known)
        super().__init__(f"unknown {kind} {name!r}; known: {', '.join(self.known) or '(none)'}")


class FvbenchWarning(UserWarning):
    """Something in the user's data fvbench worked around (e.g. text in a numeric store column); the CLI prints
    ``warning: <message>`` on one line."""
