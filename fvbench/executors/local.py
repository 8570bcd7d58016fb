"""In-process executor: one worker, the generators kept loaded across units."""

from __future__ import annotations

from typing import Callable, Iterable

from fvbench.executors.base import GroupResult
from fvbench.spec import UnitGroup


class LocalExecutor:
    """Runs every group in this process with a :class:`~fvbench.worker.GroupWorker`."""

    def __init__(self, worker):
        self.worker = worker

    def run(self, groups: Iterable[UnitGroup], skip: set[str], on_result: Callable[[GroupResult], None]) -> None:
        for group in groups:
            for result in self.worker.process(group, skip):
                on_result(result)
