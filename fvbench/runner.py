"""``fvbench run`` as a library: plan a sweep, then execute it into a run folder's store, resumably.

plan: suite + sweep options -> configuration points -> units (frozen, hashed) -> groups sharing stage I.
execute: lock the run folder, skip done units, run groups on an executor, commit each row as it arrives.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from fvbench.compute.flops import preset_flops
from fvbench.errors import FvbenchError
from fvbench.executors.base import GroupResult
from fvbench.spec import ConfigPoint, SweepOptions, Unit, UnitGroup, canonical_hash, config_points, expand_units, group_units
from fvbench.suites import Suite, load_suite


@dataclass(frozen=True)
class Plan:
    """Everything a run will do, decided before any generation."""

    suite: Suite
    suite_total: int  # prompts in the whole suite before --limit
    samples: int
    points: tuple[ConfigPoint, ...]
    units: tuple[Unit, ...]
    groups: tuple[UnitGroup, ...]
    flops: dict[str, dict[str, Any]] = field(default_factory=dict)  # config_hash -> preset_flops

    @property
    def plan_hash(self) -> str:
        return canonical_hash(sorted(u.unit_hash for u in self.units))

    def default_name(self) -> str:
        """A run folder name that is the same for the same plan, so rerunning the same command resumes it."""
        suite = re.sub(r"[^A-Za-z0-9._-]+", "_", self.suite.name)[:40] or "suite"
        return f"{suite}-{self.plan_hash[:10]}"

    def total_flops(self) -> int:
        return sum(self.flops[u.config.config_hash]["total"] for u in self.units)

    def stage_computations(self) -> list[tuple[int, int]]:
        """Per stage depth, (runs with prefix sharing, runs without): the saving sharing buys at each depth."""
        depth = max((len(u.prefix_keys) for u in self.units), default=0)
        return [(len({u.prefix_keys[:i + 1] for u in self.units if len(u.prefix_keys) > i}),
                 sum(len(u.prefix_keys) > i for u in self.units)) for i in range(depth)]

    def stage1_computations(self) -> tuple[int, int]:
        """(stage-I runs with sharing, stage-I runs without)."""
        return (self.stage_computations() or [(0, 0)])[0]


def make_plan(suite_name: str, opts: SweepOptions, limit: int | None = None, samples: int | None = None,
              base_seed: int = 0, max_flops: float | None = None) -> Plan:
    """Expand a suite and sweep into units; ``max_flops`` keeps only configurations at or under that many FLOPs per video."""
    full = load_suite(suite_name)
    suite = full.limited(limit)
    samples = samples if samples is not None else full.samples_per_prompt
    points = config_points(opts)
    flops = {p.config_hash: preset_flops(p.preset) for p in points}
    if max_flops is not None:
        if max_flops <= 0:
            raise FvbenchError(f"--max-flops must be positive, got {max_flops}")
        points = [p for p in points if flops[p.config_hash]["total"] <= max_flops]
        if not points:
            raise FvbenchError(f"no configuration fits under --max-flops {max_flops:.3g} FLOPs per video")
    units = expand_units(points, suite, samples, base_seed)
    return Plan(suite, len(full.prompts), samples, tuple(points), tuple(units), tuple(group_units(units)), flops)


@dataclass
class RunSummary:
    """What an execution did."""

    run_dir: Path
    done: int = 0
    failed: int = 0
    skipped: int = 0
    seconds: float = 0.0
    lost: dict[str, str] = field(default_factory=dict)  # unit_hash -> why its stored video was generated again


_STAGE_VIDEO = re.compile(r"s\d+_video_path")


def _check_video_names(plan: Plan, rows: list[dict[str, Any]], done: set[str], worker) -> None:
    """Refuse a plan whose videos would replace a video that another unit (stored or planned) owns.

    File names follow VBench (prompt text and sample), so two units differing only in prompt id or seed would share
    a file; the second would silently replace the first one's video while both rows point at it.
    """
    owner: dict[str, str] = {}
    for r in rows:
        for key, path in r.items():
            if path and _STAGE_VIDEO.fullmatch(key):  # s<i>_video_path, any number of stages
                owner[path] = r["unit_hash"]
    who = {r["unit_hash"]: f"prompt id {r['prompt_id']!r}, seed {r['seed']}" for r in rows}
    who.update({u.unit_hash: f"prompt id {u.prompt.id!r}, seed {u.seed}" for u in plan.units})
    clashes = []
    for u in plan.units:
        if u.unit_hash in done:
            continue
        for path in worker.video_paths(u):
            other = owner.setdefault(path, u.unit_hash)
            if other != u.unit_hash:
                clashes.append((path, who[other], who[u.unit_hash]))
    if clashes:
        path, a, b = clashes[0]
        raise FvbenchError(f"{len(clashes)} video file(s) would be shared by two different units, e.g. {path} "
                           f"({a}, and {b}): the same prompt text and sample with another prompt id or seed; "
                           f"nothing was generated; use another --out folder for this run")


def execute(plan: Plan, run_dir: Path, worker, executor=None,
            on_result: Callable[[GroupResult], None] | None = None, run_info: dict[str, Any] | None = None,
            before_work: Callable[[list[Unit]], None] | None = None,
            record: Callable[[Any], None] | None = None) -> RunSummary:
    """Run the plan into ``run_dir`` (created if needed); rows are committed one by one, done units are skipped.

    Everything about the folder is checked first, under its lock: its contents, the store, stored videos still on
    disk (a missing or resized one is generated again), file names no two units share. Only then
    ``before_work(units to generate)`` runs (model loading, warm-up), then generation. ``record(store)`` adds the
    caller's run information to the store beside ``last_plan``, under the same lock.
    """
    from fvbench.executors.local import LocalExecutor
    from fvbench.runfiles import RunLock, prepare_run_dir, remove_temps, safe_path, write_atomic
    from fvbench.store import open_store, video_problems

    run_dir = prepare_run_dir(run_dir)
    with RunLock(run_dir):
        store = open_store(run_dir, create=True)
        try:
            remove_temps(run_dir)
            rows = store.video_rows()
            planned = {u.unit_hash for u in plan.units}
            lost = {h: why for h, why in video_problems(run_dir, rows).items() if h in planned}
            done = store.done_hashes() - set(lost)
            _check_video_names(plan, rows, done, worker)
            summary = RunSummary(run_dir, skipped=sum(u.unit_hash in done for u in plan.units), lost=lost)
            if before_work is not None:
                before_work([u for u in plan.units if u.unit_hash not in done])
            store.set_info("last_plan", {**(run_info or {}), "suite": plan.suite.name,
                                         "suite_sha256": plan.suite.sha256, "suite_prompts": len(plan.suite.prompts),
                                         "suite_total": plan.suite_total, "samples": plan.samples,
                                         "units": len(plan.units), "configs": [p.label for p in plan.points],
                                         "started_at": time.time()})
            if record is not None:
                record(store)
            start = time.perf_counter()

            def commit(result: GroupResult) -> None:
                row = dict(result.row)
                row["attempts"] = store.attempts(row["unit_hash"]) + 1
                store.put_unit(row, result.metrics)
                if row["status"] == "done":
                    summary.done += 1
                else:
                    summary.failed += 1
                if on_result is not None:
                    on_result(result)

            (executor or LocalExecutor(worker)).run(plan.groups, done, commit)
            summary.seconds = time.perf_counter() - start
            store.set_info("last_finished", {"at": time.time(), "done": summary.done, "failed": summary.failed,
                                             "skipped": summary.skipped, "seconds": summary.seconds})
            write_atomic(safe_path(run_dir, "run.json"),
                         json.dumps({**(run_info or {}), "plan_hash": plan.plan_hash}, indent=2, default=str))
        finally:
            store.close()
    return summary
