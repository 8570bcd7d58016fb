"""Executors run groups of units and hand each finished row back to the driver, which commits it.

The in-process executor is the default; a distributed one (Ray) implements the same interface.
"""

from fvbench.executors.base import Executor, GroupResult
from fvbench.executors.local import LocalExecutor

__all__ = ["Executor", "GroupResult", "LocalExecutor"]
