"""The library entry points of a sweep: every decision of a run lives here, and ``fvbench run`` only parses and prints.

``plan_sweep`` holds the defaults (``--limit auto``, samples, the metric list); ``run_sweep`` holds the run folder,
the ``latest`` pointer, model loading and warm-up, the executor (closed when the run ends, even on an error) and
the provenance. A Python caller and the shell get the same plan and the same run from the same arguments.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Mapping, Protocol, Sequence

from fvbench.errors import FvbenchError
from fvbench.executors.base import GroupResult
from fvbench.runner import Plan, RunSummary
from fvbench.scoring import notify as _call
from fvbench.spec import Unit

CPU_DEFAULT_LIMIT = 2  # prompts, for the presets fvbench ships (random or packaged weights) on a registered suite
CPU_DEFAULT_SAMPLES = 1


@dataclass(frozen=True)
class SweepPlan:
    """A planned sweep and the defaults it was planned with (``limit`` None: the whole suite)."""

    plan: Plan
    suite_arg: str
    limit: int | None
    samples: int
    metrics: tuple[str, ...]
    metric_fn: Callable | None = field(default=None, compare=False, repr=False)

    @property
    def plan_hash(self) -> str:
        return self.plan.plan_hash


@dataclass(frozen=True)
class RayOptions:
    """Ray actors of a run (``address`` None: start a local Ray)."""

    workers: int = 2
    threads_per_worker: int = 1
    address: str | None = None


@dataclass(frozen=True)
class SweepResult:
    """What ``run_sweep`` did: the run folder, counts, the machine, warm-up seconds (not in stored timings)."""

    run_dir: Path
    summary: RunSummary
    provenance: dict[str, Any]
    warmup_s: float | None
    lost: dict[str, str]


class RunProgress(Protocol):
    """What a caller (the CLI) hears while ``run_sweep`` runs; every method is optional."""

    def started(self, run_dir: Path) -> None: ...
    def warmed_up(self, presets: int, seconds: float) -> None: ...
    def generating(self, total: int) -> None: ...
    def result(self, result: GroupResult) -> None: ...


def _limit(limit: int | str, cpu_scale: bool, user_file: bool) -> int | None:
    if limit == "auto":
        return CPU_DEFAULT_LIMIT if cpu_scale and not user_file else None
    if limit == "all":
        return None
    try:
        n = int(limit)
    except (TypeError, ValueError):
        raise FvbenchError(f"--limit expects a number, 'all' or 'auto', got {limit!r}") from None
    if n <= 0:
        raise FvbenchError(f"--limit must be positive, got {n}")
    return n


def plan_sweep(suite: str = "vbench", *, presets: Sequence[str] = (), sizes: Sequence[str] = ("s",),
               stage1_nfe: Sequence[int] = (), stage2_nfe: Sequence[int] = (),
               stage_nfe: Mapping[int, Sequence[int]] | None = None, nfe_sweep: bool = False,
               limit: int | Literal["auto", "all"] = "auto", samples: int | None = None,
               max_flops: float | None = None, seed: int = 0, metrics: Sequence[str] | None = None) -> SweepPlan:
    """Plan a sweep with ``fvbench run``'s defaults.

    ``limit="auto"``: the first 2 prompts and 1 sample for the presets fvbench ships on a registered suite, else the
    whole suite and its samples. ``metrics`` None: the suite's own metrics then the offline ones; () for none. The
    per-video metrics are built here, so a missing weight or package fails before any generation.
    """
    from fvbench.generation.presets import get_preset
    from fvbench.metrics.registry import DEFAULT_METRICS, make_metric_fn
    from fvbench.runner import make_plan
    from fvbench.spec import SweepOptions, default_preset_names

    opts = SweepOptions(presets=tuple(presets), sizes=tuple(sizes), stage1_nfe=tuple(stage1_nfe),
                        stage2_nfe=tuple(stage2_nfe), nfe_sweep=nfe_sweep,
                        stage_nfe=tuple(sorted((int(k), tuple(v)) for k, v in (stage_nfe or {}).items())))
    names = opts.presets or default_preset_names(opts.sizes)
    opts = dataclasses.replace(opts, presets=names)  # resolved once: the plan runs exactly these
    cpu_scale = all(get_preset(n).cpu_scale for n in names)
    user_file = Path(suite).suffix in (".txt", ".yaml", ".yml", ".json")
    n_limit = _limit(limit, cpu_scale, user_file)
    if samples is None and cpu_scale and not user_file:
        samples = CPU_DEFAULT_SAMPLES
    plan = make_plan(suite, opts, n_limit, samples, seed, max_flops)
    metric_list = (tuple(dict.fromkeys(plan.suite.metrics + DEFAULT_METRICS)) if metrics is None
                   else tuple(m for m in metrics if m))
    metric_fn = make_metric_fn(metric_list) if metric_list else None
    return SweepPlan(plan, suite, n_limit, plan.samples, metric_list, metric_fn)


def run_folder(sweep: SweepPlan, out: Path | None = None) -> Path:
    """The run folder: ``out``, or ``<runs>/<suite>-<plan hash>`` so the same command resumes the same run."""
    from fvbench.paths import default_runs_dir

    return Path(out) if out is not None else default_runs_dir() / sweep.plan.default_name()


def run_sweep(sweep: SweepPlan, *, out: Path | None = None, save_videos: str = "all", device: str = "cpu",
              weights: Path | None = None, warmup: bool = True, executor: Literal["local", "ray"] | Any = "local",
              ray: RayOptions | None = None, progress: RunProgress | None = None,
              command: str | None = None) -> SweepResult:
    """Run a planned sweep into its run folder (resuming what is stored) and return what was done.

    ``executor``: "local" (this process), "ray" (``ray`` options), or an object with ``run(groups, skip, on_result)``.
    Whichever runs the sweep is shut down when it ends, even on an error. The ``latest`` pointer of the runs folder
    follows a run made there. Warm-up (one discarded 1-NFE generation per preset) runs only in this process.
    """
    from fvbench.paths import default_runs_dir
    from fvbench.provenance import provenance
    from fvbench.runfiles import prepare_run_dir, write_latest
    from fvbench.runner import execute
    from fvbench.scoring import availability, record_metrics
    from fvbench.worker import GroupWorker

    plan = sweep.plan
    if save_videos not in ("all", "previews", "none"):
        raise FvbenchError(f"save_videos must be all, previews or none, got {save_videos!r}")
    if isinstance(executor, str) and executor not in ("local", "ray"):
        raise FvbenchError(f"executor must be 'local', 'ray' or an executor object, got {executor!r}")
    runs = default_runs_dir()
    run_dir = run_folder(sweep, out)
    info: dict[str, Any] = {"command": command if command is not None else " ".join(sys.argv),
                            "suite_arg": sweep.suite_arg, "metrics": list(sweep.metrics)}
    if executor == "ray":
        from fvbench.executors.ray import _ray

        _ray()  # fails here, before any work, when Ray is not installed
        ray = ray or RayOptions()
        if ray.workers <= 0 or ray.threads_per_worker <= 0:
            raise FvbenchError("--workers and --threads-per-worker must be positive")
    prov = provenance(device)
    info["provenance"] = prov
    at_run = availability(sweep.metrics)  # what this machine can compute, kept for the report (metrics_at_run)
    worker = GroupWorker(run_dir, prov, (plan.suite.name, plan.suite.sha256), device, weights, save_videos,
                         sweep.metric_fn)
    prepare_run_dir(run_dir)  # folder checks first: a refused folder costs no model loading
    _call(progress, "started", run_dir)
    warmup_s: list[float] = []

    def before_work(todo: list[Unit]) -> None:
        """Under the run folder's lock, after its checks: load the models, warm up, start the progress."""
        for base in dict.fromkeys(p.base for p in plan.points):
            worker.components(base)  # load every model before generating: a missing weight fails here
        if warmup and executor == "local" and todo:
            firsts: dict[str, Unit] = {}
            for u in plan.units:
                firsts.setdefault(u.config.base, u)
            warmup_s.append(sum(worker.warmup(base, u) for base, u in firsts.items()))
            _call(progress, "warmed_up", len(firsts), warmup_s[0])
        _call(progress, "generating", len(plan.units))

    if run_dir.resolve().parent == Path(runs).resolve():
        write_latest(runs, run_dir)
    runner = None
    if executor == "ray":
        from fvbench.executors.ray import RayExecutor

        worker_args = {"run_dir": run_dir, "provenance": prov, "suite": (plan.suite.name, plan.suite.sha256),
                       "device": device, "weights": weights, "save_videos": save_videos}
        runner = RayExecutor(worker_args, sweep.metrics, ray.workers, ray.threads_per_worker, ray.address)
        info["executor"] = f"ray ({ray.workers} workers x {ray.threads_per_worker} threads)"
    elif executor != "local":
        runner = executor
    try:
        summary = execute(plan, run_dir, worker, executor=runner, run_info=info, before_work=before_work,
                          on_result=None if progress is None else (lambda r: _call(progress, "result", r)),
                          record=lambda store: record_metrics(store, at_run))
    finally:
        if runner is not None and hasattr(runner, "shutdown"):
            runner.shutdown()
    return SweepResult(run_dir, summary, prov, warmup_s[0] if warmup_s else None, dict(summary.lost))

