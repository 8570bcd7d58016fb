"""Ray executor: unit groups spread over Ray actors, each keeping its generators loaded across groups.

A group (every unit sharing a base preset, prompt and seed) always runs on one actor, so stage-I sharing holds.
The driver stays the only writer of the store: actors return rows, the driver commits them as groups finish.
Actors are restarted by Ray if their process dies, and the group in flight is retried (``max_task_retries``);
a unit's identity never depends on which actor ran it. Ray is optional: ``pip install fvbench[ray]``.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

from fvbench.errors import FvbenchError
from fvbench.executors.base import GroupResult
from fvbench.spec import UnitGroup


def _ray():
    try:
        import ray
    except ImportError:
        raise FvbenchError("--executor ray needs Ray: pip install 'fvbench[ray]' (or pip install 'ray[default]')") from None
    return ray


class _Actor:
    """Runs groups with a GroupWorker built inside the actor process."""

    def __init__(self, worker_args: dict[str, Any], metric_names: tuple[str, ...], threads: int):
        import os

        import torch

        from fvbench.metrics.registry import make_metric_fn
        from fvbench.worker import GroupWorker

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        torch.set_num_threads(threads)
        self.worker = GroupWorker(**worker_args, metric_fn=make_metric_fn(metric_names) if metric_names else None)

    def pid(self) -> int:
        import os

        return os.getpid()

    def process(self, group: UnitGroup, skip: set[str]) -> list[GroupResult]:
        return list(self.worker.process(group, skip))


class RayExecutor:
    """Shards groups over ``workers`` Ray actors (local Ray by default, or the cluster at ``address``)."""

    def __init__(self, worker_args: dict[str, Any], metric_names: tuple[str, ...] = (), workers: int = 2,
                 threads_per_worker: int = 1, address: str | None = None, object_store_bytes: int = 256 * 2**20):
        self.ray = _ray()
        self.worker_args, self.metric_names = worker_args, metric_names
        self.workers, self.threads, self.address = workers, threads_per_worker, address
        self.object_store_bytes = object_store_bytes
        self.actors: list[Any] = []
        self.started_ray = False  # whether this executor started Ray (then shutdown stops it too)
        self.on_dispatch: Callable[[int], None] | None = None  # test hook: called with the number of groups dispatched

    def _init(self) -> None:
        ray = self.ray
        if ray.is_initialized():
            return
        self.started_ray = True
        if self.address:
            ray.init(address=self.address, log_to_driver=False)
        else:
            ray.init(num_cpus=self.workers * self.threads, include_dashboard=False, log_to_driver=False,
                     object_store_memory=self.object_store_bytes, _node_ip_address="127.0.0.1",
                     runtime_env={"env_vars": {"HF_HUB_OFFLINE": "1", "RAY_USAGE_STATS_ENABLED": "0"}})

    def actor_pids(self) -> list[int]:
        return self.ray.get([a.pid.remote() for a in self.actors])

    def run(self, groups: Iterable[UnitGroup], skip: set[str], on_result: Callable[[GroupResult], None]) -> None:
        ray = self.ray
        self._init()
        remote = ray.remote(num_cpus=self.threads, max_restarts=-1, max_task_retries=-1)(_Actor)
        self.actors = [remote.remote(self.worker_args, self.metric_names, self.threads) for _ in range(self.workers)]
        pending = [g for g in groups if any(u.unit_hash not in skip for u in g.units)]
        in_flight: dict[Any, int] = {}
        idle = list(range(len(self.actors)))
        dispatched = 0
        while pending or in_flight:
            while pending and idle:
                i = idle.pop(0)
                in_flight[self.actors[i].process.remote(pending.pop(0), skip)] = i
                dispatched += 1
                if self.on_dispatch:
                    self.on_dispatch(dispatched)
            done, _ = ray.wait(list(in_flight), num_returns=1)
            for ref in done:
                idle.append(in_flight.pop(ref))
                for result in ray.get(ref):
                    on_result(result)

    def shutdown(self) -> None:
        """Kill the actors, and stop the Ray this executor started (a Ray the caller started stays up)."""
        for a in self.actors:
            self.ray.kill(a)
        self.actors = []
        if self.started_ray and self.ray.is_initialized():
            self.ray.shutdown()
        self.started_ray = False

    def __enter__(self) -> "RayExecutor":
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
