"""``fvbench metrics`` (what exists, what runs here, what it costs) and ``fvbench score`` (add metrics to a finished
run from its saved videos, without regenerating)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import click

from fvbench.errors import FvbenchError


@click.command()
@click.option("--vbench", "show_vbench", is_flag=True, help="Also list VBench's 16 dimensions and the weight files "
              "each is missing under $VBENCH_CACHE_DIR.")
@click.option("--time", "time_shape", metavar="FxHxW",
              help="Measure each available metric's wall time per video on a random clip of this size, e.g. 49x480x720.")
@click.option("--runs", default=3, show_default=True, help="Timed runs per metric (median reported), with --time.")
def metrics(show_vbench: bool, time_shape: str | None, runs: int) -> None:
    """List every metric: available here or exactly what is missing, direction, level, version."""
    from fvbench.metrics.registry import DEFAULT_METRICS, get_metric, list_metrics
    from fvbench.metrics.semantics import semantics

    for name in list_metrics():
        m = get_metric(name)
        missing = m.missing()
        status = "available" if not missing else "unavailable: " + "; ".join(missing)
        direction = semantics(name).label()
        extra = ", needs --reference" if m.needs_reference else ""
        default = ", default in runs" if name in DEFAULT_METRICS else ""
        click.echo(f"{name:22s} {m.level}-level, {direction}, v{m.version}{extra}{default}: {m.description}; "
                   f"needs {m.requires} [{status}]")
    click.echo("vbench:<dimension>     video- and set-level, out of process: fvbench score RUN --vbench-python PATH "
               "(an environment with VBench 0.1.5, built by scripts/setup_vbench_env.sh, and its weights in "
               "$VBENCH_CACHE_DIR); list with --vbench")
    if show_vbench:
        _list_vbench()
    if time_shape:
        _time_metrics(time_shape, runs)


def _list_vbench() -> None:
    from fvbench.metrics.vbench import DIMENSIONS, QUALITY, cache_dir, missing_weights

    click.echo(f"VBench dimensions (weights under {cache_dir()}, names as vbench 0.1.5 loads them with local=True):")
    for d in DIMENSIONS:
        absent = missing_weights([d])
        status = "weights present" if not absent else "missing " + "; ".join(absent)
        click.echo(f"  {d:24s} {'quality' if d in QUALITY else 'semantic'}, higher is better [{status}]")


def _time_metrics(text: str, runs: int) -> None:
    import torch

    from fvbench.metrics.cost import parse_shape, time_metric
    from fvbench.metrics.registry import get_metric, list_metrics

    shape = parse_shape(text)
    click.echo(f"wall seconds per video on a random {shape[0]}x{shape[1]}x{shape[2]} clip, CPU, "
               f"{torch.get_num_threads()} threads, median of {runs} runs after one warm-up:")
    for name in list_metrics():
        m = get_metric(name)
        if m.missing():
            click.echo(f"  {name:22s} skipped (unavailable here)")
            continue
        try:
            cost = time_metric(m, shape, runs=runs)
        except Exception as e:  # one metric's failure does not hide the others' costs
            click.echo(f"  {name:22s} failed: {type(e).__name__}: {e}")
            continue
        what = "per video (feature extraction)" if m.level == "set" else "per video"
        click.echo(f"  {name:22s} {cost.seconds:8.3f} s {what}")


def _names(text: str | None) -> list[str]:
    return [n.strip() for n in (text or "").split(",") if n.strip()]


def _done_rows(run_dir: Path) -> Any:
    """The run's finished rows with ``final_path`` (stage-II video of a cascade, else stage I); rows whose videos
    are missing on disk are left out, and said so."""
    from fvbench.store import load_results, video_problems

    df = load_results(run_dir)
    df = df[df.status == "done"]
    lost = video_problems(run_dir, df.to_dict("records"))
    if lost:
        click.echo(f"{len(lost)} video(s) missing or changed on disk are not scored (rerun the run's command to "
                   f"generate them again): " + "; ".join(list(lost.values())[:5]), err=True)
        df = df[~df.unit_hash.isin(lost)]
    return df.assign(final_path=df.final_video_path)  # recorded once by the worker (schema 2)


@click.command()
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--metrics", "names", help="Comma list of metric names (fvbench metrics lists them).")
@click.option("--reference", help="Configuration label to compare against (for *_vs_ref, fvd, fid), e.g. cpu-dit-s_s1-50.")
@click.option("--vbench-python", help="Interpreter of an environment with VBench and its weights: run VBench on the videos.")
@click.option("--vbench-dimensions", help="Comma list of VBench dimensions (default: those the run's prompts belong "
              "to, as VBench_full_info.json lists them).")
@click.option("--vbench-timeout", type=float, help="Seconds before a VBench evaluation is abandoned (default: none).")
@click.option("--config", "configs", multiple=True, help="Only these configurations (VBench).")
@click.option("--device", default="auto", show_default=True,
              help="Device VBench runs on: auto = cuda when the VBench environment's torch sees a GPU, else cpu.")
def score(run_dir: Path, names: str | None, reference: str | None, vbench_python: str | None,
          vbench_dimensions: str | None, vbench_timeout: float | None, configs: tuple[str, ...], device: str) -> None:
    """Add metrics to a finished run from its saved videos (the store gains rows; nothing is regenerated)."""
    from fvbench.metrics.registry import resolve

    if not names and not vbench_python:
        raise FvbenchError("give --metrics NAMES and/or --vbench-python PATH")
    metric_list = resolve(_names(names)) if names else []  # fails fast on a missing weight, package or interpreter
    set_metrics = [m for m in metric_list if m.level == "set"]
    video_metrics = [m for m in metric_list if m.level != "set"]
    if (set_metrics or any(m.needs_reference for m in video_metrics)) and not reference:
        raise FvbenchError(f"{', '.join(m.name for m in metric_list if m.needs_reference)} need --reference CONFIG "
                           "(a configuration label of this run)")
    if vbench_python:
        _score_vbench(run_dir, vbench_python, vbench_dimensions, configs, device, vbench_timeout)
    if video_metrics:
        _score_videos(run_dir, video_metrics, reference)
    if set_metrics:
        _score_sets(run_dir, set_metrics, str(reference))


def _score_videos(run_dir: Path, metric_list: list, reference: str | None) -> None:
    """Per-video metrics on each saved final video (reference metrics against the same prompt and sample)."""
    from fvbench.metrics.registry import score_video
    from fvbench.runfiles import RunLock
    from fvbench.store import open_store
    from fvbench.video import read_mp4

    df = _done_rows(run_dir)
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
                video = read_mp4(Path(run_dir) / r.final_path)
                ref_path = refs.get((r.prompt, r.sample))
                ref = read_mp4(Path(run_dir) / ref_path) if ref_path else None
                store.put_metrics(r.unit_hash, score_video(metric_list, video, r.prompt, ref, source="mp4"))
                scored += 1
        finally:
            store.close()
    click.echo(f"scored {scored} videos with {', '.join(m.name for m in metric_list)} (decoded from the saved mp4s)")


def _score_vbench(run_dir: Path, python: str, dims: str | None, configs: tuple[str, ...], device: str,
                  timeout: float | None) -> None:
    """Stage each configuration's videos under VBench names in a fresh folder, run VBench, store its scores.

    Default dimensions: those the run's prompts belong to (stored with each prompt, and VBench_full_info.json's own
    lookup for prompts of other suites). A dimension VBench returns NaN for is reported and stored as having no
    value; the others are kept. A staging folder whose evaluation failed is removed.
    """
    import json
    import tempfile
    import time

    from fvbench.errors import MissingWeightsError
    from fvbench.metrics.vbench import (DIMENSIONS, check_dimensions, missing_weights, prompt_dimensions, run_vbench,
                                        stage_videos)
    from fvbench.runfiles import RunLock, safe_dir
    from fvbench.suites import vbench_info_path

    df = _done_rows(run_dir)
    if dims:
        dimensions = check_dimensions(_names(dims))
    else:
        named = df[(df.vbench_name == 1) & df.final_path.notna()]
        stored = {d for text in named.dimensions.dropna() for d in json.loads(text)}
        found = stored | set(prompt_dimensions(vbench_info_path(), list(named.prompt.unique())))
        dimensions = [d for d in DIMENSIONS if d in found]
        if not dimensions:
            raise FvbenchError(f"none of the prompts of {run_dir} belongs to a VBench dimension (VBench's standard "
                               "mode would score nothing); name them with --vbench-dimensions")
        click.echo(f"VBench dimensions of this run's prompts: {', '.join(dimensions)}")
    absent = missing_weights(dimensions)
    if absent:  # before staging or starting anything
        raise MissingWeightsError(f"VBench weights missing (VBench would try to download them): {'; '.join(absent)}")
    wanted = list(configs) or sorted(df.config.unique())
    stamp = time.strftime("%Y%m%d-%H%M%S")
    with RunLock(run_dir):
        for config in wanted:
            rows = df[(df.config == config) & df.final_path.notna()]
            if rows.empty:
                raise FvbenchError(f"no saved videos of configuration {config!r} in {run_dir}")
            named = rows[rows.vbench_name == 1]
            skipped = len(rows) - len(named)
            if skipped:
                click.echo(f"{config}: {skipped} video(s) whose prompt VBench's naming cannot represent are not scored")
            base = Path(tempfile.mkdtemp(prefix=f"{config}-{stamp}-", dir=safe_dir(Path(run_dir), "vbench")))
            by_name = {Path(p).name: h for p, h in zip(named.final_path, named.unit_hash)}
            try:
                stage_videos([(Path(p).name, Path(run_dir) / p) for p in named.final_path], base / "videos")
                result = run_vbench(python, base / "videos", base / "results", config, dimensions, vbench_info_path(),
                                    device, timeout)
            except BaseException:
                shutil.rmtree(base, ignore_errors=True)  # a failed attempt leaves nothing behind
                raise
            _store_vbench(run_dir, config, result, by_name, len(named))
            _echo_vbench(config, result, len(named))


def _store_vbench(run_dir: Path, config: str, result: Any, by_name: dict[str, str], videos: int) -> None:
    """Per-video values as ``vbench:<dimension>`` metrics; per-dimension aggregates and totals as run info."""
    from fvbench.store import open_store

    store = open_store(run_dir)
    try:
        for dim, values in result.per_video.items():
            for name, value in values.items():
                if name in by_name:
                    store.put_metrics(by_name[name], {f"vbench:{dim}": (value, None, result.metric_version(dim))})
        store.set_info(f"vbench:{config}", {
            # None where VBench returned NaN (no staged video belongs to the dimension); listed in "no_value"
            "dimensions": {d: (None if v != v else v) for d, v in result.per_dimension.items()},
            "no_value": result.no_value, "totals": result.totals, "videos": videos, "protocol": result.protocol,
            "vbench": result.vbench_version, "device": result.extra.get("device"),
            "per_video_versions": {d: result.metric_version(d) for d in result.per_dimension},
            "scored_per_dimension": {d: len(v) for d, v in result.per_video.items()}})
    finally:
        store.close()


def _echo_vbench(config: str, result: Any, videos: int) -> None:
    """Every dimension's score (with how many videos it covers), then Quality, Semantic and Total."""
    device = result.extra.get("device") or "?"
    click.echo(f"{config}: VBench ({videos} videos, standard protocol, {device}), per dimension (videos scored):")
    for d, v in result.per_dimension.items():
        shown = f"{v:.4f}" if v == v else "no value (none of the staged videos belongs to it)"
        click.echo(f"  {d:24s} {shown} ({len(result.per_video.get(d, {}))})")
    click.echo("  " + ", ".join(f"{k} {v:.4f}" if v is not None else f"{k} n/a (not all its dimensions scored)"
                                for k, v in result.totals.items()))


def _score_sets(run_dir: Path, metric_list: list, reference: str) -> None:
    """Set-level metrics (FVD, FID): each configuration's videos against the reference configuration's.

    Videos are decoded and fed one at a time (the metrics keep running sums), and the reference set is fed once.
    """
    from fvbench.runfiles import RunLock
    from fvbench.store import SetMetric as SetMetricRow, open_store
    from fvbench.video import read_mp4

    df = _done_rows(run_dir)
    if reference not in set(df.config):
        raise FvbenchError(f"no videos of configuration {reference!r}; known: {', '.join(sorted(set(df.config)))}")

    def videos(config: str):
        for p in df[df.config == config].final_path.dropna():
            yield read_mp4(Path(run_dir) / p)

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
                    store.put_set_metric(SetMetricRow(m.name, config, reference, value, error,
                                                      details.pop("version", m.version), n, n_ref, details))
                    shown = f"{value:.4g}" if value is not None else f"failed ({error})"
                    click.echo(f"{config}: {m.name} = {shown} against {reference} ({n} vs {n_ref} videos, "
                               f"v{m.version})")
        finally:
            store.close()
