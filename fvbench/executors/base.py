"""The executor interface."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Protocol

from fvbench.spec import UnitGroup


@dataclass
class GroupResult:
    """One finished unit: its store row and metric values (name -> (value, error, version))."""

    row: dict[str, Any]
    metrics: dict[str, tuple[float | None, str | None, str]]


class Executor(Protocol):
    """Runs unit groups (each group on one worker, so stage-I sharing holds) and calls ``on_result`` per unit."""

    def run(self, groups: Iterable[UnitGroup], skip: set[str], on_result: Callable[[GroupResult], None]) -> None: ...
