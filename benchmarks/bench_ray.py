"""Ray scaling: wall time of the same units on 1 actor vs 2 actors (1 torch thread each), measured in one run.

Actors are started and warmed (one group each) before timing, so start-up is not counted.
Usage: python benchmarks/bench_ray.py [--preset cpu-dit-s] [--nfe 10] [--prompts 8]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import ray  # noqa: E402

from fvbench.executors.ray import RayExecutor  # noqa: E402
from fvbench.provenance import provenance  # noqa: E402
from fvbench.spec import SweepOptions, config_points, expand_units, group_units  # noqa: E402
from fvbench.suites import Prompt, Suite  # noqa: E402


def timed(workers: int, groups, warm, tmp: Path) -> float:
    args = {"run_dir": tmp / f"w{workers}", "provenance": provenance("cpu"), "suite": ("bench", "0" * 64),
            "save_videos": "none"}
    ex = RayExecutor(args, workers=workers, threads_per_worker=1)
    ex.run(warm[:workers], set(), lambda r: None)  # start and warm every actor
    start = time.perf_counter()
    n = []
    ex.run(groups, set(), n.append)
    seconds = time.perf_counter() - start
    ex.shutdown()
    assert len(n) == sum(len(g.units) for g in groups)
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="cpu-dit-s")
    ap.add_argument("--nfe", type=int, default=10)
    ap.add_argument("--prompts", type=int, default=8)
    args = ap.parse_args()
    points = config_points(SweepOptions(presets=(args.preset,), stage1_nfe=(args.nfe,)))
    suite = Suite("b", tuple(Prompt(f"p{i}", f"a red cat number {i}") for i in range(args.prompts + 2)), "0" * 64, "b")
    groups = group_units(expand_units(points, suite, 1))
    warm, work = groups[:2], groups[2:]
    with tempfile.TemporaryDirectory() as tmp:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=256 * 2**20,
                 _node_ip_address="127.0.0.1")
        # RayExecutor re-creates actors per run; the actor pool is sized per measurement
        one = timed(1, work, warm, Path(tmp))
        two = timed(2, work, warm, Path(tmp))
        ray.shutdown()
    print(f"preset {args.preset}, {args.nfe} NFE, {len(work)} videos, actors with 1 torch thread each, local Ray, 2 cores")
    print(f"1 worker: {one:.1f} s; 2 workers: {two:.1f} s; speedup {one / two:.2f}x (target >= 1.6)")


if __name__ == "__main__":
    main()
