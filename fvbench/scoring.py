"""Scoring a finished run after the fact, from its saved videos: the library entry point behind ``fvbench score``.

``score_run`` owns the whole pipeline (which rows, which videos, reference pairing, VBench staging, what is stored)
and returns a :class:`ScoreResult`; the CLI only parses, calls and prints. It also keeps the run's record of what
could be computed: :func:`metrics_at_run` reads it, for the report, so "unavailable" is what the machine that ran
(or scored) the run saw, not the machine that reports.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Protocol, Sequence

from fvbench.errors import FvbenchError, MissingWeightsError

if TYPE_CHECKING:
    import pandas as pd

    from fvbench.metrics.base import Metric
    from fvbench.metrics.vbench import VBenchResult
    from fvbench.store import SetMetric, Store

INFO_KEY = "metrics_at_run"


@dataclass(frozen=True)
class VBenchScore:
    """One configuration's VBench evaluation: the result, how many videos were scored and how many VBench's file
    naming could not represent (not scored)."""

    config: str
    result: "VBenchResult"
    videos: int
    skipped: int = 0


@dataclass(frozen=True)
class ScoreResult:
    """What ``score_run`` stored.

    ``scored``: per-video metric -> videos scored; ``set_metrics``: the set-level rows written; ``vbench``: per
    configuration; ``vbench_dimensions``: the dimensions VBench ran (``dimensions_from_prompts``: chosen from the run's
    prompts, not named by the caller); ``lost``: videos missing or changed on disk, left out (unit hash -> why).
    """

    run_dir: Path
    scored: dict[str, int] = field(default_factory=dict)
    set_metrics: tuple["SetMetric", ...] = ()
    vbench: dict[str, VBenchScore] = field(default_factory=dict)
    vbench_dimensions: tuple[str, ...] = ()
    dimensions_from_prompts: bool = False
    lost: dict[str, str] = field(default_factory=dict)


class ScoreProgress(Protocol):
    """What a caller (the CLI) hears while ``score_run`` works; every method is optional."""

    def lost(self, lost: dict[str, str]) -> None: ...
    def vbench_dimensions(self, dimensions: tuple[str, ...]) -> None: ...
    def vbench_scored(self, score: VBenchScore) -> None: ...
    def videos_scored(self, videos: int, metrics: tuple[str, ...]) -> None: ...
    def set_metric(self, rec: "SetMetric") -> None: ...


def notify(progress: Any, name: str, *args: Any) -> None:
    """Call ``progress.<name>(*args)`` if the caller's progress object has that method (all are optional)."""
    fn = getattr(progress, name, None)
    if fn is not None:
        fn(*args)


def score_run(run_dir: str | Path, *, metrics: Sequence[str] = (), reference: str | None = None,
              vbench_python: str | None = None, vbench_dimensions: Sequence[str] | None = None,
              configs: Sequence[str] = (), device: str = "auto", timeout: float | None = None,
              progress: ScoreProgress | None = None) -> ScoreResult:
    """Add metrics to a finished run from its saved final videos (the store gains rows; nothing is regenerated).

    ``metrics``: registered metric names; per-video ones score every saved final video (``*_vs_ref`` against the
    ``reference`` configuration's video of the same prompt and sample), set-level ones (FVD, FID) each configuration
    against ``reference``. ``vbench_python``: an interpreter of an environment with VBench; its ``vbench_dimensions``
    default to those the run's prompts belong to, ``configs`` to every configuration, ``device`` "auto" to cuda when
    that environment's torch sees a GPU, ``timeout`` (seconds) to none. Metrics are resolved first, so a missing
    weight, package or interpreter fails before anything is read or written. VBench runs first, then per-video
    metrics, then set-level ones, each under the run folder's lock.
    """
    from fvbench.metrics.registry import resolve

    run_dir = Path(run_dir)
    names = [n for n in metrics if n]
    if not names and not vbench_python:
        raise FvbenchError("give --metrics NAMES and/or --vbench-python PATH")
    metric_list = resolve(names) if names else []  # fails fast on a missing weight, package or interpreter
    set_level = [m for m in metric_list if m.level == "set"]
    per_video = [m for m in metric_list if m.level != "set"]
    if (set_level or any(m.needs_reference for m in per_video)) and not reference:
        raise FvbenchError(f"{', '.join(m.name for m in metric_list if m.needs_reference)} need --reference CONFIG "
                           "(a configuration label of this run)")
    df, lost = _done_rows(run_dir)
    if lost:
        notify(progress, "lost", lost)
    out: dict[str, Any] = {"run_dir": run_dir, "lost": lost}
    if vbench_python:
        dims, chosen = _vbench_dimensions(run_dir, df, vbench_dimensions)
        if chosen:
            notify(progress, "vbench_dimensions", dims)
        out.update(vbench=_score_vbench(run_dir, df, vbench_python, dims, configs, device, timeout, progress),
                   vbench_dimensions=dims, dimensions_from_prompts=chosen)
    if per_video:
        n = _score_videos(run_dir, df, per_video, reference)
        out["scored"] = {m.name: n for m in per_video}
        notify(progress, "videos_scored", n, tuple(m.name for m in per_video))
    if set_level:
        out["set_metrics"] = tuple(_score_sets(run_dir, df, set_level, str(reference), progress))
    return ScoreResult(**out)


def _done_rows(run_dir: Path) -> tuple["pd.DataFrame", dict[str, str]]:
    """The run's finished rows with ``final_path`` (the video the worker recorded as final), and the rows whose
    videos are missing or changed on disk (left out)."""
    from fvbench.store import load_results, video_problems

    df = load_results(run_dir)
    df = df[df.status == "done"]
    lost = video_problems(run_dir, df.to_dict("records"))
    if lost:
        df = df[~df.unit_hash.isin(lost)]
    return df.assign(final_path=df.final_video_path), lost


def _score_videos(run_dir: Path, df: "pd.DataFrame", metric_list: list["Metric"], reference: str | None) -> int:
    """Per-video metrics on each saved final video (reference metrics against the same prompt and sample)."""
    from fvbench.metrics.registry import score_video
    from fvbench.runfiles import RunLock
    from fvbench.store import open_store
    from fvbench.video import read_mp4

    if df.empty or df.final_path.isna().all():
        raise FvbenchError(f"{run_dir} has no saved final videos to score (was it run with --save-videos none?)")
    refs: dict[tuple[str, int], str] = {}
    if any(m.needs_reference for m in metric_list):
        ref_rows = df[(df.config == reference) & df.final_path.notna()]
        if ref_rows.empty:
            raise FvbenchError(f"no saved videos of configuration {reference!r} in {run_dir}; "
                               f"known: {', '.join(sorted(df.config.unique()))}")
        refs = {(r.prompt, r.sample): r.final_path for r in ref_rows.itertuples()}
    scored = 0
    with RunLock(run_dir):
        store = open_store(run_dir)
        try:
            for r in df.itertuples():
                if not isinstance(r.final_path, str):
                    continue
                video = read_mp4(run_dir / r.final_path)
                ref_path = refs.get((r.prompt, r.sample))
                ref = read_mp4(run_dir / ref_path) if ref_path else None
                store.put_metrics(r.unit_hash, score_video(metric_list, video, r.prompt, ref, source="mp4"))
                scored += 1
            record_metrics(store, {m.name: _entry(m, "mp4") for m in metric_list})
        finally:
            store.close()
    return scored


def _vbench_dimensions(run_dir: Path, df: "pd.DataFrame", named: Sequence[str] | None) -> tuple[tuple[str, ...], bool]:
    """The dimensions to run, and whether they were chosen from the run's prompts: those named, else the ones the
    run's prompts belong to (stored with each prompt, and VBench_full_info.json's own lookup for other suites)."""
    from fvbench.metrics.vbench import DIMENSIONS, check_dimensions, prompt_dimensions
    from fvbench.suites import vbench_info_path

    if named:
        return tuple(check_dimensions(list(named))), False
    rows = df[(df.vbench_name == 1) & df.final_path.notna()]
    stored = {d for text in rows.dimensions.dropna() for d in json.loads(text)}
    found = stored | set(prompt_dimensions(vbench_info_path(), list(rows.prompt.unique())))
    dims = tuple(d for d in DIMENSIONS if d in found)
    if not dims:
        raise FvbenchError(f"none of the prompts of {run_dir} belongs to a VBench dimension (VBench's standard "
                           "mode would score nothing); name them with --vbench-dimensions")
    return dims, True


def _score_vbench(run_dir: Path, df: "pd.DataFrame", python: str, dimensions: tuple[str, ...],
                  configs: Sequence[str], device: str, timeout: float | None,
                  progress: ScoreProgress | None) -> dict[str, VBenchScore]:
    """Stage each configuration's videos under VBench names in a fresh folder, run VBench, store its scores.

    A dimension VBench returns NaN for is stored as having no value; the others are kept. A staging folder whose
    evaluation failed is removed.
    """
    from fvbench.metrics.vbench import missing_weights, run_vbench, stage_videos
    from fvbench.runfiles import RunLock, safe_dir
    from fvbench.suites import vbench_info_path

    absent = missing_weights(list(dimensions))
    if absent:  # before staging or starting anything
        raise MissingWeightsError(f"VBench weights missing (VBench would try to download them): {'; '.join(absent)}")
    wanted = list(configs) or sorted(df.config.unique())
    stamp = time.strftime("%Y%m%d-%H%M%S")
    done: dict[str, VBenchScore] = {}
    with RunLock(run_dir):
        for config in wanted:
            rows = df[(df.config == config) & df.final_path.notna()]
            if rows.empty:
                raise FvbenchError(f"no saved videos of configuration {config!r} in {run_dir}")
            named = rows[rows.vbench_name == 1]
            base = Path(tempfile.mkdtemp(prefix=f"{config}-{stamp}-", dir=safe_dir(run_dir, "vbench")))
            by_name = {Path(p).name: h for p, h in zip(named.final_path, named.unit_hash)}
            try:
                stage_videos([(Path(p).name, run_dir / p) for p in named.final_path], base / "videos")
                result = run_vbench(python, base / "videos", base / "results", config, list(dimensions),
                                    vbench_info_path(), device, timeout)
            except BaseException:
                shutil.rmtree(base, ignore_errors=True)  # a failed attempt leaves nothing behind
                raise
            _store_vbench(run_dir, config, result, by_name, len(named))
            done[config] = VBenchScore(config, result, len(named), len(rows) - len(named))
            notify(progress, "vbench_scored", done[config])
    return done


def _store_vbench(run_dir: Path, config: str, result: "VBenchResult", by_name: dict[str, str], videos: int) -> None:
    """Per-video values as ``vbench:<dimension>`` metrics; per-dimension aggregates and totals as run info."""
    from fvbench.store import open_store

    store = open_store(run_dir)
    try:
        for dim, values in result.per_video.items():
            for name, value in values.items():
                if name in by_name:
                    store.put_metrics(by_name[name], {f"vbench:{dim}": (value, None, result.metric_version(dim),
                                                                        "mp4")})
        store.set_info(f"vbench:{config}", {
            # None where VBench returned NaN (no staged video belongs to the dimension); listed in "no_value"
            "dimensions": {d: (None if v != v else v) for d, v in result.per_dimension.items()},
            "no_value": result.no_value, "totals": result.totals, "videos": videos, "protocol": result.protocol,
            "vbench": result.vbench_version, "device": result.extra.get("device"),
            "per_video_versions": {d: result.metric_version(d) for d in result.per_dimension},
            "scored_per_dimension": {d: len(v) for d, v in result.per_video.items()}})
        record_metrics(store, {f"vbench:{d}": {"version": result.metric_version(d), "level": "video",
                                               "source": "mp4", "available": True, "missing": [], "stored": True}
                               for d in result.per_video})
    finally:
        store.close()


def _score_sets(run_dir: Path, df: "pd.DataFrame", metric_list: list["Metric"], reference: str,
                progress: ScoreProgress | None) -> list["SetMetric"]:
    """Set-level metrics (FVD, FID): each configuration's videos against the reference configuration's.

    Videos are decoded and fed one at a time (the metrics keep running sums), and the reference set is fed once.
    """
    from fvbench.runfiles import RunLock
    from fvbench.store import SetMetric as SetMetricRow, open_store
    from fvbench.video import read_mp4

    if reference not in set(df.config):
        raise FvbenchError(f"no videos of configuration {reference!r}; known: {', '.join(sorted(set(df.config)))}")

    def videos(config: str) -> Iterable[Any]:
        for p in df[df.config == config].final_path.dropna():
            yield read_mp4(run_dir / p)

    rows: list[SetMetricRow] = []
    with RunLock(run_dir):
        store = open_store(run_dir)
        try:
            for m in metric_list:
                m.reset(keep_reference=False)
                m.update(videos(reference), real=True)
                for config in sorted(set(df.config) - {reference}):
                    m.reset(keep_reference=True)
                    try:
                        m.update(videos(config), real=False)
                        value, error = m.compute(), None
                    except Exception as e:  # recorded, the others go on
                        value, error = None, f"{type(e).__name__}: {(str(e).splitlines() or [''])[0]}"[:500]
                    n = int(df[(df.config == config)].final_path.notna().sum())
                    n_ref = int(df[(df.config == reference)].final_path.notna().sum())
                    details = m.details()
                    rec = SetMetricRow(m.name, config, reference, value, error, details.pop("version", m.version), n,
                                       n_ref, details)
                    store.put_set_metric(rec)
                    rows.append(rec)
                    notify(progress, "set_metric", rec)
            record_metrics(store, {r.metric: {**_entry(m, "mp4"), "version": r.version}
                                   for m in metric_list for r in rows if r.metric == m.name})
        finally:
            store.close()
    return rows


# --- what the run's machine could compute -------------------------------------------------------------------------

def _entry(metric: "Metric", source: str | None, missing: list[str] | None = None) -> dict[str, Any]:
    """One metric's record: version, level, the input it read (None: not computed), availability and what is missing."""
    missing = list(metric.missing()) if missing is None else missing
    return {"version": metric.version, "level": metric.level, "source": source, "available": not missing,
            "missing": missing, "stored": source is not None}


def availability(run_metrics: Sequence[str] = ()) -> dict[str, dict[str, Any]]:
    """Every registered metric as this machine sees it: ``{name: {version, level, source, available, missing,
    stored}}``. ``run_metrics`` are those the run computes per video: their ``source`` is the input they read
    ("mp4": the written video, "frames": the generated frames) and ``stored`` is True; the others have source None."""
    from fvbench.metrics.registry import get_metric, list_metrics

    out: dict[str, dict[str, Any]] = {}
    for name in dict.fromkeys([*run_metrics, *list_metrics()]):
        try:
            m = get_metric(name)
        except FvbenchError as e:  # a plug-in's metric that does not import: recorded, the run goes on without it
            if name in run_metrics:
                raise
            out[name] = {"version": None, "level": None, "source": None, "available": False, "missing": [str(e)],
                         "stored": False}
            continue
        source = ("mp4" if getattr(m, "reads_encoded", False) else "frames") if name in run_metrics else None
        out[name] = _entry(m, source)
    return out


def merge_entries(old: Mapping[str, Mapping[str, Any]], new: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """``old`` updated with ``new``: availability is the newest; a metric stored earlier (by the run or by ``score``)
    keeps its version and source when the new record did not compute it."""
    merged = {k: dict(v) for k, v in old.items()}
    for name, entry in new.items():
        before = merged.get(name, {})
        if not entry.get("stored") and before.get("stored"):
            entry = {**entry, **{k: before[k] for k in ("version", "source", "stored") if k in before}}
        merged[name] = dict(entry)
    return merged


def record_metrics(store: "Store", entries: Mapping[str, Mapping[str, Any]]) -> None:
    """Merge ``entries`` into the store's ``metrics_at_run`` record (call under the run folder's lock)."""
    store.set_info(INFO_KEY, merge_entries(store.info().get(INFO_KEY) or {}, entries))


def metrics_at_run(run_dir: str | Path) -> dict[str, dict[str, Any]]:
    """What the machine that ran the run (and, for the metrics it added, ``fvbench score``) could compute:
    ``{name: {"version", "level": "video"|"set", "source": "frames"|"mp4"|None, "available": bool,
    "missing": [what was missing], "stored": bool}}``. {} for a run made before fvbench recorded it. Read-only."""
    from fvbench.store import open_store

    store = open_store(Path(run_dir), readonly=True)
    try:
        return dict(store.info().get(INFO_KEY) or {})
    finally:
        store.close()
