"""``fvbench run`` (the sweep), ``fvbench suites`` and ``fvbench export``."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from fvbench.errors import FvbenchError
from fvbench.textsafe import printable

EXIT_UNITS_FAILED = 3  # the run finished but some videos failed (0: all stored; 2: bad input, nothing run)


def _ints(value: str | None, flag: str) -> tuple[int, ...]:
    if not value:
        return ()
    try:
        return tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise FvbenchError(f"{flag} expects a comma list of integers, got {value!r}") from None


def _names(value: str | None) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip()) if value else ()


def _gemm_gflops() -> float:
    """Measured fp32 GEMM throughput of this machine (a 1024^3 matmul, best of 3), for the dry-run estimate."""
    import torch

    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    a @ b
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * 1024**3 / best / 1e9


@click.command()
@click.option("--suite", "suite_name", default="vbench", show_default=True,
              help="vbench, vbench:<dimension>, a suite under suites/, or a prompt file (.txt/.yaml).")
@click.option("--nfe-sweep", is_flag=True, help="Stage I {10,20,30,50} x stage II {1,2,4,8}; single-stage at {10,20,30,50}.")
@click.option("--stage1-nfe", help="Comma list of stage-I NFEs (overrides the sweep's).")
@click.option("--stage2-nfe", help="Comma list of stage-II NFEs (cascades).")
@click.option("--stage-nfe", "stage_nfes", multiple=True,
              help="STAGE=NFE[,NFE...]: NFEs of any stage, e.g. --stage-nfe 3=1,2 (repeatable; overrides the above).")
@click.option("--sizes", default="s", show_default=True,
              help="Sizes of the default families, which a plug-in registers (fvbench's own: its trained cascade and "
                   "single-stage baselines; --dry-run lists them) "
                   "(s, m; a family without the size is left out). Random-weight CPU-scale presets "
                   "(cpu-flashvideo-<s|m|l>, cpu-dit-<s|m|l>) and real ones by --presets.")
@click.option("--presets", help="Comma list of presets to run instead of the default families.")
@click.option("--limit", default="auto", show_default=True,
              help="First N prompts of the suite (in suite order), or 'all'. auto: 2 for the presets fvbench ships "
                   "(trained in the package, or random-weight CPU-scale) on a registered suite, else all.")
@click.option("--samples", type=int,
              help="Videos per prompt (default: the suite's, VBench 5; 1 for the presets fvbench ships on a registered "
                   "suite).")
@click.option("--max-flops", type=float, help="Keep only configurations with at most this many FLOPs per video.")
@click.option("--seed", "base_seed", default=0, show_default=True, type=int, help="Base seed.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Run folder (default: <runs>/<suite>-<plan hash>, so the same command resumes).")
@click.option("--save-videos", type=click.Choice(["all", "previews", "none"]), default="all", show_default=True,
              help="all: final videos (VBench naming) and stage-I previews; previews: only those; none.")
@click.option("--device", default="cpu", show_default=True)
@click.option("--weights", type=click.Path(file_okay=False, path_type=Path), help="Weights folder for real presets.")
@click.option("--metrics", "metric_names",
              help="Comma list of per-video metrics (see `fvbench metrics`); default: the suite's own (its YAML's "
                   "'metrics:') then the offline ones; 'none' for none.")
@click.option("--warmup/--no-warmup", default=True, show_default=True,
              help="One discarded 1-NFE generation per preset first, so first-call costs stay out of the timings.")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: in this process; ray: Ray actors (pip install 'fvbench[ray]').")
@click.option("--workers", default=2, show_default=True, type=int, help="Ray actors (--executor ray).")
@click.option("--threads-per-worker", default=1, show_default=True, type=int, help="Torch threads per Ray actor.")
@click.option("--address", help="Ray cluster address (default: start a local Ray).")
@click.option("--dry-run", is_flag=True, help="Print the plan (videos, predicted FLOPs, time estimate) and stop.")
@click.option("--allow-large", is_flag=True,
              help="Lift the ceilings on NFE (1000), frames (1025) and height/width (4096) on purpose "
                   "(also FVBENCH_ALLOW_LARGE=1).")
def run(suite_name: str, nfe_sweep: bool, stage1_nfe: str | None, stage2_nfe: str | None,
        stage_nfes: tuple[str, ...], sizes: str,
        presets: str | None, limit: str, samples: int | None, max_flops: float | None, base_seed: int,
        out: Path | None, save_videos: str, device: str, weights: Path | None, metric_names: str | None,
        warmup: bool, executor: str, workers: int, threads_per_worker: int, address: str | None,
        dry_run: bool, allow_large: bool) -> None:
    """Run a sweep of generators over a prompt suite and store one row per video.

    Exit status: 0 every video stored; 2 bad input (nothing run); 3 the run finished but some videos failed (their
    errors are in the store)."""
    from fvbench.api import RayOptions, plan_sweep, run_sweep
    from fvbench.generation.presets import lift_ceilings

    if allow_large:
        lift_ceilings()
    stage_nfe = {}
    for item in stage_nfes:
        number, sep, values = item.partition("=")
        if not sep or not number.strip().isdigit():
            raise FvbenchError(f"--stage-nfe expects STAGE=NFE[,NFE...], e.g. 3=1,2; got {item!r}")
        stage_nfe[int(number)] = _ints(values, f"--stage-nfe {number}")
    sweep = plan_sweep(suite_name, presets=_names(presets), sizes=_names(sizes),
                       stage1_nfe=_ints(stage1_nfe, "--stage1-nfe"), stage2_nfe=_ints(stage2_nfe, "--stage2-nfe"),
                       stage_nfe=stage_nfe, nfe_sweep=nfe_sweep, limit=limit, samples=samples, max_flops=max_flops,
                       seed=base_seed,
                       metrics=None if metric_names is None else _names(metric_names.replace("none", "")))
    sweep_args = " ".join(a for a in (
        "--nfe-sweep" if nfe_sweep else "", f"--stage1-nfe {stage1_nfe}" if stage1_nfe else "",
        f"--stage2-nfe {stage2_nfe}" if stage2_nfe else "", *(f"--stage-nfe {v}" for v in stage_nfes),
        f"--presets {presets}" if presets else f"--sizes {sizes}",
    ) if a)
    _print_plan(sweep.plan, sweep.limit, f"--suite {suite_name} {sweep_args}", save_videos, sweep.metrics)
    if dry_run:
        _print_estimate(sweep.plan)
        return
    result = run_sweep(sweep, out=out, save_videos=save_videos, device=device, weights=weights, warmup=warmup,
                       executor=executor, ray=RayOptions(workers, threads_per_worker, address),
                       progress=_Progress(), command=" ".join(sys.argv))
    _report(result, len(sweep.plan.units))


def _print_plan(plan, n_limit, command: str, save_videos: str, metric_list: tuple[str, ...]) -> None:
    from fvbench.generation.presets import get_preset, scope_notes

    by_base: dict[str, list] = {}
    for p in plan.points:
        by_base.setdefault(p.base, []).append(p)
    part = (f"the first {len(plan.suite.prompts)} of its {plan.suite_total} prompts (--limit {n_limit})"
            if n_limit is not None and n_limit < plan.suite_total else f"all {plan.suite_total} prompts")
    click.echo(f"suite {printable(plan.suite.name)}: {part}, {plan.samples} sample(s) per prompt; sha256 {plan.suite.sha256[:16]}")
    for base, pts in by_base.items():
        splits = ", ".join("/".join(map(str, p.nfe)) for p in pts)
        click.echo(f"  preset {printable(base)}: {len(pts)} configuration(s), NFE {splits}")
    shared, naive = plan.stage1_computations()
    click.echo(f"  {len(plan.units)} videos; stage I computed {shared} times instead of {naive} (prefix sharing); "
               f"predicted compute {plan.total_flops() / 1e12:.2f} TFLOP for all videos; videos saved: {save_videos}")
    for depth, (done_once, naive_runs) in enumerate(plan.stage_computations()[1:-1], start=2):
        click.echo(f"  stage {depth} computed {done_once} times instead of {naive_runs} (prefix sharing)")
    click.echo(f"  metrics per video: {', '.join(metric_list) or 'none'}")
    click.echo(f"  plan sha256 {plan.plan_hash[:16]} (run folder name {printable(plan.default_name())})")
    random = [b for b in by_base if get_preset(b).builtin]
    if random:
        click.echo(f"  {printable(', '.join(random))}: random weights (CPU scale): numbers measure compute and timing, not quality.")
    for line in scope_notes(list(by_base)):
        click.echo(f"  {printable(line)}")
    if n_limit is not None or plan.samples < plan.suite.samples_per_prompt:
        click.echo(f"  whole suite: fvbench run {printable(command)} --limit all --samples {plan.suite.samples_per_prompt}")


def _print_estimate(plan) -> None:
    import pandas as pd

    gflops = _gemm_gflops()
    assumed = 0.25 * gflops
    rows = []
    for p in plan.points:
        n = sum(1 for u in plan.units if u.config.config_hash == p.config_hash)
        f = plan.flops[p.config_hash]["total"]
        rows.append({"config": p.label, "videos": n, "TFLOP/video": f / 1e12, "est. s/video": f / (assumed * 1e9)})
    df = pd.DataFrame(rows)
    click.echo(printable(df.to_string(index=False, float_format=lambda v: f"{v:.4g}"), keep_newlines=True))
    total = plan.total_flops() / (assumed * 1e9)
    click.echo(f"time estimate (rough): {total / 60:.1f} min for {len(plan.units)} videos, from FLOPs at 25% of this "
               f"machine's measured fp32 GEMM throughput ({gflops:.0f} GFLOP/s, 1 measurement of 3 repeats); "
               f"stage-I sharing and small-model overheads are not modelled")


class _Progress:
    """What ``fvbench run`` prints while the library runs the sweep."""

    def __init__(self) -> None:
        self.bar = None

    def started(self, run_dir: Path) -> None:
        click.echo(f"run folder: {run_dir}")

    def warmed_up(self, presets: int, seconds: float) -> None:
        click.echo(f"warm-up: 1 discarded generation at 1 NFE per preset ({presets}), {seconds:.1f} s, "
                   f"not in the stored timings")

    def generating(self, total: int) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=total, unit="video", file=sys.stderr, dynamic_ncols=True, mininterval=1.0)

    def result(self, result) -> None:
        self.bar.update(1)
        if result.row.get("status") == "failed":
            self.bar.write(printable(f"failed: {result.row['config']} {result.row['prompt_id']}: {result.row['error']}"))


def _report(result, planned: int) -> None:
    """The end of ``fvbench run``: what was done, the summary table, and exit status 3 when videos failed."""
    summary, prov, run_dir = result.summary, result.provenance, result.run_dir
    if summary.lost:
        click.echo(f"{len(summary.lost)} stored video(s) were missing or changed on disk and were generated again "
                   f"(e.g. {next(iter(summary.lost.values()))})")
    click.echo(f"done: {summary.done} new, {summary.skipped} already stored, {summary.failed} failed, "
               f"{summary.seconds:.1f} s wall on {prov['device']} ({prov.get('device_name')}, "
               f"{prov.get('torch_threads')} threads)")
    _print_summary(run_dir)
    if summary.failed:
        click.echo(f"error: {summary.failed} of {planned} videos failed (exit status {EXIT_UNITS_FAILED}); "
                   f"each error is in the store's error column ({run_dir / 'results.sqlite'}, status 'failed'; "
                   f"`fvbench report {run_dir}` lists them under 'Missing and failed'); rerun the same command to "
                   f"retry only those", err=True)
        raise click.exceptions.Exit(EXIT_UNITS_FAILED)


def _print_summary(run_dir: Path) -> None:
    from fvbench.store import load_results

    df = load_results(run_dir)
    done = df[df.status == "done"]
    if done.empty:
        return
    depth = max(2, int(done["n_stages"].max())) if "n_stages" in done and done["n_stages"].notna().any() else 2
    stage_s = {f"stage{i}_s": (f"s{i}_seconds", "mean") for i in range(1, depth + 1) if f"s{i}_seconds" in done}
    table = done.groupby("config", sort=False).agg(
        videos=("unit_hash", "size"), preview_s=("preview_s", "mean"), total_s=("total_s", "mean"),
        **stage_s, tflop=("flops_total", "mean"), shared_s1=("s1_shared", "sum"))
    table["tflop"] = table["tflop"] / 1e12
    click.echo("per configuration (means over videos; seconds are wall time per video on this device; "
               "total_s = text encode + all stages as if stage I were not shared; tflop = FLOPs per video / 1e12):")
    click.echo(printable(table.to_string(float_format=lambda v: f"{v:.3g}"), keep_newlines=True))
    s1_measured = done.loc[done.s1_shared == 0, "s1_seconds"].sum()
    s1_naive = done["s1_seconds"].sum()
    if s1_naive > 0 and len(done) > 1:
        click.echo(f"stage-I prefix sharing: stage-I time spent {s1_measured:.1f} s instead of {s1_naive:.1f} s "
                   f"({s1_measured / s1_naive:.2f}x) for the videos generated")
    unnamed = done[done.vbench_name == 0].prompt.nunique()
    if unnamed:
        click.echo(f"{unnamed} prompt(s) cannot be VBench file names (path characters, control characters, length, "
                   f"Unicode normalisation, or characters this system's {sys.getfilesystemencoding()} file names "
                   f"cannot hold): their videos are named _p-<sha256>-<i>.mp4 and the exact prompt is in "
                   f"the store (columns prompt, s*_video_path)")
    click.echo(f"results: fvbench.load_results({str(run_dir)!r}); report: fvbench report {run_dir}")


@click.command()
def suites() -> None:
    """List the prompt suites (and VBench dimensions)."""
    from fvbench.suites import list_suites

    for name in list_suites():
        click.echo(printable(name))


@click.command()
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["parquet", "csv"]), default="parquet", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True)
def export(run_dir: Path, fmt: str, out: Path) -> None:
    """Write a run's rows (metrics as columns) to parquet or CSV."""
    from fvbench.runfiles import atomic_output, output_file
    from fvbench.store import load_results

    out = output_file(out, "--out")  # before any work: no store, run file or symlink is overwritten
    df = load_results(run_dir)
    with atomic_output(out) as tmp:
        if fmt == "parquet":
            df.to_parquet(tmp, index=False)
        else:
            df.to_csv(tmp, index=False)
    click.echo(f"{len(df)} rows -> {out}")
