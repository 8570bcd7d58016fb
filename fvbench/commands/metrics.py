"""``fvbench metrics`` (what exists, what runs here) and ``fvbench score`` (add metrics to a finished run)."""

from __future__ import annotations

from pathlib import Path

import click

from fvbench.errors import FvbenchError


@click.command()
def metrics() -> None:
    """List every metric: available here or exactly what is missing, direction, level, version."""
    from fvbench.metrics.registry import DEFAULT_METRICS, get_metric, list_metrics

    for name in list_metrics():
        m = get_metric(name)
        missing = m.missing()
        status = "available" if not missing else "unavailable: " + "; ".join(missing)
        direction = "higher is better" if m.higher_is_better else "lower is better"
        extra = ", needs --reference" if m.needs_reference else ""
        default = ", default in runs" if name in DEFAULT_METRICS else ""
        click.echo(f"{name:22s} {m.level}-level, {direction}, v{m.version}{extra}{default}: {m.description} [{status}]")
    click.echo("vbench:<dimension>     video- and set-level, out of process: fvbench score RUN --vbench-python PATH "
               "(an environment with VBench 0.1.5 and its weights in $VBENCH_CACHE_DIR) [needs that environment]")


@click.command()
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--metrics", "names", help="Comma list of metric names.")
@click.option("--reference", help="Configuration label to compare against (for *_vs_ref metrics), e.g. cpu-dit-s_s1-50.")
@click.option("--vbench-python", help="Interpreter of an environment with VBench and its weights: run VBench on the videos.")
@click.option("--vbench-dimensions", help="Comma list of VBench dimensions (default: all 16).")
@click.option("--config", "configs", multiple=True, help="Only these configurations (VBench).")
@click.option("--device", default="cuda", show_default=True, help="Device VBench runs on.")
def score(run_dir: Path, names: str | None, reference: str | None, vbench_python: str | None,
          vbench_dimensions: str | None, configs: tuple[str, ...], device: str) -> None:
    """Add metrics to a finished run from its saved videos (the store gains rows; nothing is regenerated)."""
    if vbench_python:
        _score_vbench(run_dir, vbench_python, vbench_dimensions, configs, device)
    if not names:
        if not vbench_python:
            raise FvbenchError("give --metrics NAMES and/or --vbench-python PATH")
        return
    from fvbench.metrics.registry import resolve, score_video
    from fvbench.runfiles import RunLock
    from fvbench.store import load_results, open_store
    from fvbench.video import read_mp4

    metric_list = resolve([n.strip() for n in names.split(",") if n.strip()])
    set_metrics = [m for m in metric_list if m.level == "set"]
    metric_list = [m for m in metric_list if m.level != "set"]
    if set_metrics:
        _score_sets(run_dir, set_metrics, reference)
    if not metric_list:
        return
    df = load_results(run_dir)
    df = df[(df.status == "done")]
    final = df.apply(lambda r: r["s2_video_path"] if isinstance(r.get("s2_video_path"), str) else r["s1_video_path"],
                     axis=1) if len(df) else []
    df = df.assign(final_path=final)
    if df.empty or df.final_path.isna().all():
        raise FvbenchError(f"{run_dir} has no saved final videos to score (was it run with --save-videos none?)")
    refs = {}
    if any(m.needs_reference for m in metric_list):
        if not reference:
            raise FvbenchError("metrics *_vs_ref need --reference CONFIG (a configuration label of this run)")
        ref_rows = df[df.config == reference]
        if ref_rows.empty:
            raise FvbenchError(f"no videos of configuration {reference!r} in {run_dir}; "
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
                store.put_metrics(r.unit_hash, score_video(metric_list, video, r.prompt, ref))
                scored += 1
        finally:
            store.close()
    click.echo(f"scored {scored} videos with {', '.join(m.name for m in metric_list)} (decoded from the saved mp4s)")


def _final_paths(df):
    return df.s2_video_path.where(df.s2_video_path.notna(), df.s1_video_path)


def _score_vbench(run_dir: Path, python: str, dims: str | None, configs: tuple[str, ...], device: str) -> None:
    """Stage each configuration's videos under VBench names in a fresh folder, run VBench, store its scores."""
    import tempfile
    import time

    from fvbench.metrics.vbench import QUALITY, SEMANTIC, run_vbench, stage_videos
    from fvbench.runfiles import RunLock
    from fvbench.store import load_results, open_store
    from fvbench.suites import VBENCH_DIMENSIONS, vbench_info_path

    dimensions = [d.strip() for d in dims.split(",")] if dims else list(QUALITY + SEMANTIC)
    unknown = [d for d in dimensions if d not in VBENCH_DIMENSIONS]
    if unknown:
        from fvbench.errors import UnknownNameError

        raise UnknownNameError("VBench dimension", unknown[0], list(VBENCH_DIMENSIONS))
    df = load_results(run_dir)
    df = df[df.status == "done"].assign(final_path=lambda d: _final_paths(d))
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
            (Path(run_dir) / "vbench").mkdir(exist_ok=True)
            base = Path(tempfile.mkdtemp(prefix=f"{config}-{stamp}-", dir=Path(run_dir) / "vbench"))
            by_name = {Path(p).name: h for p, h in zip(named.final_path, named.unit_hash)}
            stage_videos([(Path(p).name, Path(run_dir) / p) for p in named.final_path], base / "videos")
            result = run_vbench(python, base / "videos", base / "results", config, dimensions, vbench_info_path(), device)
            store = open_store(run_dir)
            try:
                for dim, videos in result.per_video.items():
                    for name, value in videos.items():
                        if name in by_name:
                            store.put_metrics(by_name[name], {f"vbench:{dim}": (value, None, "vbench_standard")})
                store.set_info(f"vbench:{config}", {"dimensions": result.per_dimension, "totals": result.totals,
                                                    "videos": len(named), "protocol": "vbench_standard"})
            finally:
                store.close()
            t = result.totals
            click.echo(f"{config}: VBench ({len(named)} videos, standard protocol) " + ", ".join(
                f"{k} {v:.4f}" if v is not None else f"{k} n/a (not all its dimensions scored)" for k, v in t.items()))


def _score_sets(run_dir: Path, metrics, reference: str | None) -> None:
    """Set-level metrics (FVD): each configuration's videos against the reference configuration's."""
    from fvbench.runfiles import RunLock
    from fvbench.store import load_results, open_store
    from fvbench.video import read_mp4

    if not reference:
        raise FvbenchError(f"{', '.join(m.name for m in metrics)} compare against --reference CONFIG")
    df = load_results(run_dir)
    df = df[df.status == "done"].assign(final_path=lambda d: _final_paths(d))
    if reference not in set(df.config):
        raise FvbenchError(f"no videos of configuration {reference!r}; known: {', '.join(sorted(set(df.config)))}")
    load = lambda rows: [read_mp4(Path(run_dir) / p) for p in rows.final_path.dropna()]  # noqa: E731
    refs = load(df[df.config == reference])
    with RunLock(run_dir):
        store = open_store(run_dir)
        try:
            for config in sorted(set(df.config) - {reference}):
                videos = load(df[df.config == config])
                for m in metrics:
                    try:
                        value, error = m.compute_set(videos, refs), None
                    except Exception as e:  # recorded, the others go on
                        value, error = None, f"{type(e).__name__}: {e}"
                    store.set_info(f"set:{m.name}:{config}", {"value": value, "error": error, "reference": reference,
                                                              "videos": len(videos), "version": m.version})
                    shown = f"{value:.4g}" if value is not None else f"failed ({error})"
                    click.echo(f"{config}: {m.name} = {shown} against {reference} ({len(videos)} vs {len(refs)} videos)")
        finally:
            store.close()
