"""Load and report time of a ~100k-video run: a9c3d54 (schema 1) against this version (schema 2), in one run.

Builds, in a temporary folder, the same synthetic run twice (946 prompts x 5 samples x 21 configurations = 99,330
videos; 12 cascade configurations with 2 stages, 9 single-stage with 1; every column a real run fills is filled;
4 metrics per video = 397,320 metric rows): once as a schema-1 store through a9c3d54's own `fvbench/store.py` (read
at run time with `git show`, not committed), once as schema 2 through this one, both with `executemany`. Then, in
alternating rounds, times `load_results`: a9c3d54's; this version's from the store alone (no column file, as after
a killed run or a hand edit); this version's with the column file a writing command leaves when it closes the store
(written here by `write_load_cache`, timed apart). Then `fvbench report` of a9c3d54 (a `git archive` tree in a
temporary folder) and of this version, each in a fresh process, alternating, and optionally a cProfile of this
version's report. The machine is shared: every figure carries the load average, and the ratios are medians of
rounds that ran side by side. Run from the repository: `python benchmarks/bench_store_load.py [--profile-report]`.

Measured 2026-12-02 05:33-05:35 UTC on an idle machine (load average 1.0), code of main after the merges (the report
reads the stage columns for its video check; listing presets imports no torch),
`python benchmarks/bench_store_load.py --repeats 5 --report-repeats 3`:

    store: 99330 videos, 397320 metric rows; built both schemas in 14.5 s; a writer's close wrote the column file in
      5.69 s (129 MB beside a 159 MB store)
    load_results, 5 alternating rounds, median [each]: a9c3d54 (schema 1) 3.36 s [3.85, 3.84, 3.36, 2.94, 3.32]; this
      version from the store alone 3.56 s [4.35, 4.04, 3.56, 3.50, 3.35]; with the column file 0.05 s [0.53, 0.16,
      0.04, 0.05, 0.04]; median ratio old/new 64.7x (column file), 0.94x (store alone)
    fvbench report (a fresh process each), 3 alternating rounds, median [each]: a9c3d54 10.21 s [9.25, 11.55, 10.21];
      this version 8.43 s [8.86, 8.43, 7.94]; median ratio old/new 1.3x (faster)

So on an idle machine: load_results 0.05 s with the column file (target 2 s met), 3.56 s from the store alone (about
as slow as a9c3d54's 3.36 s; target NOT met on that path); fvbench report 8.4 s vs 10.2 s. The earlier runs below
were taken while helpers loaded the machine, before those two changes.

Measured 2026-12-02 05:01-05:05 UTC on this 2-core machine, shared with other helpers' jobs but less loaded than
before (load average 2.7-5.1; not idle), code of commit 8ee75f0,
`python benchmarks/bench_store_load.py --repeats 5 --report-repeats 3 --profile-report`:

    device: cpu (AMD EPYC), 2 logical cores; load_results is single-threaded; load average 3.87 5.87 8.58 at start
    store: 99330 videos, 397320 metric rows; built both schemas in 17.6 s (executemany); a writer's close wrote the
      column file in 5.73 s (129 MB beside a 159 MB store)
    load_results, 5 alternating rounds, median [each]: a9c3d54 (schema 1) 3.65 s [3.36, 4.05, 3.84, 3.10, 3.65];
      this version from the store alone 4.06 s [4.06, 5.04, 3.40, 4.69, 3.54]; this version with the column file
      0.11 s [0.34, 0.11, 0.11, 0.08, 0.04]; median ratio old/new 36.8x (column file), 0.83x (store alone); frames
      (99330, 78) vs (99330, 84); load average 2.67 5.14 8.14
    fvbench report (a fresh process each, imports included), 3 alternating rounds, median [each]: a9c3d54 16.39 s
      [15.38, 16.39, 16.85]; this version (column file present, as a run leaves it) 19.16 s [17.92, 19.16, 22.96];
      median ratio old/new 0.9x; load average 3.09 4.53 7.58

So: with the column file a writing command leaves, `load_results` of the 100k store takes 0.11 s (median; every round
under 0.35 s), well under the 2 s target. From the store alone (no column file: a killed run, a hand edit) it takes
4.06 s, still about 1.2x SLOWER than a9c3d54's 3.65 s (median of per-round ratios 0.83x; the previous version of this
branch was 0.72x, 4.18 s vs 3.00 s on an idle machine). A cProfile of that path (under load 10, before the stage
columns were converted once rather than once per stage): cursor.fetchall of ~7M cells 31%, row tuples to columns 16%,
numpy conversions 14%, the metric pivot 14%, pandas building its str columns 9%. Writing the column file costs the
writer about 5.7 s once, when it closes the store. `fvbench report` is still about 1.1x SLOWER than a9c3d54's (19.2 s
vs 16.4 s; it does more: the answer section with paired bootstrap intervals, a check of every saved video on disk).
Where its time goes (cProfile of build_report, 28.5 s under cProfile, cumulative): `DataFrame.to_dict("records")` 13.1
s (46%; report/build.py:311 turns the whole frame into dicts for `video_problems`, which now takes the frame itself:
passing `df` would save nearly all of it), importing torch through `metrics.semantics` -> `get_metric` ->
`metrics/offline.py` 3.4 s (12%), `video_problems` 3.1 s (11%; 114k lstat calls 0.8 s), the PNG plots 2.9 s (10%),
`bootstrap_ci` 0.8 s, `load_results` from the column file under 0.5 s.

Earlier runs of this script, with the machine far more loaded (load average 9-14; absolute figures inflated 3-7x):
04:42-04:53 UTC, the same load code: load_results a9c3d54 14.34 s, store alone 17.24 s, column file 0.82 s (rounds 2.15,
0.48, 0.82); report 64.9 s old vs 85.8 s new. 04:16-04:40 UTC, before `video_problems` read frames column by column:
report 98.5 s old vs 161.5 s new (0.6x), of which `video_problems` took 72 s matching 84 keys of every row.
"""

from __future__ import annotations

import argparse
import cProfile
import importlib.util
import io
import os
import platform
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fvbench import store as new_store  # noqa: E402

OLD_COMMIT = "a9c3d54"
PROMPTS, SAMPLES, CASCADES, SINGLES = 946, 5, 12, 9
METRICS = ("temporal_flickering", "detail_laplacian_var", "detail_hf_ratio", "motion_px")


def old_store_module():
    """a9c3d54's fvbench/store.py as a module (from git, at run time)."""
    src = subprocess.run(["git", "-C", str(ROOT), "show", f"{OLD_COMMIT}:fvbench/store.py"], check=True,
                         capture_output=True, text=True).stdout
    spec = importlib.util.spec_from_loader("fvbench_store_a9c3d54", loader=None)
    mod = importlib.util.module_from_spec(spec)
    exec(compile(src, f"{OLD_COMMIT}:fvbench/store.py", "exec"), mod.__dict__)
    return mod


def synthetic_units():
    """(unit row, [stage dicts], {metric: value}) of the synthetic run, deterministic; every column a real run fills
    is filled (text of realistic length: prompts, hashes, paths, the versions JSON)."""
    rng = np.random.default_rng(0)
    configs = [(f"cpu-flashvideo-s_s1-{10 * (k % 4 + 1)}_s2-{2 ** (k // 4)}", 2) for k in range(CASCADES)]
    configs += [(f"cpu-dit-{'sml'[k // 3]}_s1-{10 * (k % 3 + 1)}", 1) for k in range(SINGLES)]
    versions = '{"torch": "2.13.0", "diffusers": "0.42.1", "transformers": "5.23.0", "numpy": "2.4.6"}'
    for config, n in configs:
        for p in range(PROMPTS):
            for s in range(SAMPLES):
                h = f"{abs(hash((config, p, s))):016x}{p:06d}{s:02d}{len(config):04d}"
                row = {"unit_hash": h, "config_hash": f"{abs(hash(config)):016x}", "config": config,
                       "preset": config.split("_")[0], "family": "cascade" if n == 2 else "single-stage",
                       "size": "s", "frames": 16, "suite": "vbench", "suite_sha256": "ab" * 32,
                       "prompt_id": f"p{p:04d}",
                       "prompt": f"a prompt of about sixty characters, number {p}, in vbench",
                       "dimensions": "subject_consistency,motion_smoothness", "sample": s, "seed": p * 10 + s,
                       "status": "done", "attempts": 1, "text_encode_s": 0.1, "preview_s": 0.5 if n == 2 else None,
                       "total_s": float(rng.random()), "wall_s": 1.0, "text_flops": 10 ** 9,
                       "flops_total": 10 ** 12 * n, "params_total": 2 * 10 ** 9, "peak_mem_kind": "rss",
                       "vbench_name": 1, "device": "cpu", "device_name": "AMD EPYC", "threads": 2,
                       "git": "82ab01b", "versions": versions, "finished_at": 1.7e9 + p}
                stages = [{"name": f"stage{i}", "nfe": 10, "nfe_executed": 10, "batch_rows": 2, "cfg": 6.0,
                           "height": 64 * i, "width": 64 * i, "solver": "flow-euler", "upsample_s": 0.1 * (i - 1),
                           "vae_encode_s": 0.1 * (i - 1), "denoise_s": float(rng.random()), "vae_decode_s": 0.2,
                           "seconds": 1.0, "shared": int(i == 1 and s > 0), "init_shared": 0, "flops": 10 ** 12,
                           "denoise_flops": 9 * 10 ** 11, "params": 10 ** 9, "peak_mem_bytes": 2 ** 30,
                           "video_sha256": f"{h}{i:02d}" + "0" * 20,
                           "video_path": f"videos/{config}/p{p:04d}-{s}-{i}.mp4", "video_bytes": 100000 + i}
                          for i in range(1, n + 1)]
                yield row, stages, dict(zip(METRICS, rng.random(len(METRICS)).tolist()))


def _insert(conn, table: str, cols: list[str], rows: list[tuple]) -> None:
    conn.execute("BEGIN")
    conn.executemany(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)})", rows)
    conn.execute("COMMIT")


def build(old, run1: Path, run2: Path) -> float:
    """The run as a schema-1 store (a9c3d54's code) in run1 and a schema-2 store (this code) in run2."""
    start = time.perf_counter()
    units = list(synthetic_units())
    s1 = old.open_store(run1, create=True)
    ucols = list(units[0][0])
    skeys = [(i, k) for i in (1, 2) for k in units[0][1][0] if f"s{i}_{k}" in old.UNIT_COLUMNS]  # a9c3d54: no bytes
    wcols = ucols + [f"s{i}_{k}" for i, k in skeys]
    wide = [tuple(r[c] for c in ucols) + tuple(st[i - 1][k] if i <= len(st) else None for i, k in skeys)
            for r, st, _ in units]
    metrics = [(r["unit_hash"], m, v, None, "1") for r, _, ms in units for m, v in ms.items()]
    _insert(s1.conn, "units", wcols, wide)
    _insert(s1.conn, "metrics", ["unit_hash", "metric", "value", "error", "version"], metrics)
    s1.close()
    s2 = new_store.open_store(run2, create=True)
    _insert(s2.conn, "units", ucols + ["n_stages", "final_video_sha256", "final_video_path", "final_video_bytes"],
            [tuple(r[c] for c in ucols) + (len(st), st[-1]["video_sha256"], st[-1]["video_path"],
                                           st[-1]["video_bytes"]) for r, st, _ in units])
    scols = list(units[0][1][0])
    _insert(s2.conn, "stages", ["unit_hash", "stage", *scols],
            [(r["unit_hash"], i + 1, *(s[k] for k in scols)) for r, st, _ in units for i, s in enumerate(st)])
    _insert(s2.conn, "metrics", ["unit_hash", "metric", "value", "error", "version", "source"],
            [m + ("frames",) for m in metrics])
    s2.close()
    return time.perf_counter() - start


def _report(tree: Path, run: Path, out: Path) -> float:
    """Wall seconds of `fvbench report RUN --out OUT` run by the code in ``tree`` (a fresh Python process)."""
    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, "PYTHONPATH": str(tree), "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg"}
    t = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "fvbench.cli", "report", str(run), "--out", str(out)], env=env,
                         capture_output=True, text=True, cwd=str(tree))
    took = time.perf_counter() - t
    if res.returncode != 0:
        raise SystemExit(f"report by {tree} failed:\n{res.stderr[-3000:]}")
    return took


def _fmt(ts: list[float]) -> str:
    return f"{statistics.median(ts):.2f} s [{', '.join(f'{t:.2f}' for t in ts)}]"


def _uptime() -> str:
    try:
        return "load average " + " ".join(open("/proc/loadavg").read().split()[:3])
    except OSError:
        return "load average unknown"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--repeats", type=int, default=5, help="alternating rounds of every timing (medians printed)")
    ap.add_argument("--report-repeats", type=int, default=3)
    ap.add_argument("--profile-report", action="store_true", help="also profile this version's report (cProfile)")
    args = ap.parse_args()
    old = old_store_module()
    import pandas as pd  # imported before timing: both versions use it

    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    print(f"device: cpu ({cpu}), {os.cpu_count()} logical cores; load_results is single-threaded; {_uptime()} at start")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        run1, run2 = tmp / "schema1", tmp / "schema2"
        run1.mkdir(), run2.mkdir()
        built = build(old, run1, run2)
        cache = run2 / new_store.LOAD_CACHE_NAME
        writer = new_store.open_store(run2)  # what a writing command does when it closes the store
        t = time.perf_counter()
        new_store.write_load_cache(writer)
        wrote = time.perf_counter() - t
        writer.close()
        print(f"store: {PROMPTS * SAMPLES * (CASCADES + SINGLES)} videos, "
              f"{PROMPTS * SAMPLES * (CASCADES + SINGLES) * len(METRICS)} metric rows; built both schemas in "
              f"{built:.1f} s (executemany); a writer's close wrote the column file in {wrote:.2f} s "
              f"({cache.stat().st_size / 1e6:.0f} MB beside a {(run2 / 'results.sqlite').stat().st_size / 1e6:.0f} MB "
              f"store)")

        def from_store(run):  # this version with no column file beside the store (e.g. a run killed mid-way)
            cache.rename(tmp / "aside.arrow")
            try:
                return new_store.load_results(run)
            finally:
                (tmp / "aside.arrow").rename(cache)

        times: dict[str, list[float]] = {"old": [], "store": [], "cached": []}
        frames = {}
        for _ in range(args.repeats):
            for name, fn, run in (("old", old.load_results, run1), ("store", from_store, run2),
                                  ("cached", new_store.load_results, run2)):
                t = time.perf_counter()
                frames[name] = fn(run)
                times[name].append(time.perf_counter() - t)
        pd.testing.assert_frame_equal(frames["store"], frames["cached"], check_exact=True)
        ratio = [o / n for o, n in zip(times["old"], times["cached"])]
        ratio_store = [o / n for o, n in zip(times["old"], times["store"])]
        print(f"load_results, {args.repeats} alternating rounds, median [each]: a9c3d54 (schema 1) "
              f"{_fmt(times['old'])}; this version from the store alone {_fmt(times['store'])}; this version "
              f"with the column file {_fmt(times['cached'])}; median ratio old/new {statistics.median(ratio):.1f}x "
              f"(column file), {statistics.median(ratio_store):.2f}x (store alone); frames {frames['old'].shape} "
              f"vs {frames['cached'].shape}; {_uptime()}")
        old_tree = tmp / "a9c3d54"
        old_tree.mkdir()
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", OLD_COMMIT], check=True, capture_output=True)
        subprocess.run(["tar", "-x", "-C", str(old_tree)], input=archive.stdout, check=True)
        reports: dict[str, list[float]] = {"old": [], "new": []}
        for _ in range(args.report_repeats):
            reports["old"].append(_report(old_tree, run1, tmp / "report-old"))
            reports["new"].append(_report(ROOT, run2, tmp / "report-new"))
        print(f"fvbench report (a fresh process each, imports included), {args.report_repeats} alternating rounds, "
              f"median [each]: a9c3d54 {_fmt(reports['old'])}; this version (column file present, as a run leaves "
              f"it) {_fmt(reports['new'])}; median ratio old/new "
              f"{statistics.median(o / n for o, n in zip(reports['old'], reports['new'])):.1f}x; {_uptime()}")
        if args.profile_report:
            from fvbench.report.build import build_report

            prof = cProfile.Profile()
            t = time.perf_counter()
            prof.runcall(build_report, run2, tmp / "report-profile")
            print(f"profile of this version's build_report (in process, {time.perf_counter() - t:.1f} s under "
                  f"cProfile), top 25 by cumulative time:")
            buf = io.StringIO()
            pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(25)
            print(buf.getvalue())
            buf = io.StringIO()
            pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(15)
            print("top 15 by own time:\n" + buf.getvalue())


if __name__ == "__main__":
    main()
