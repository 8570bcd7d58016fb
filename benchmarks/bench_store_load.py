"""Load time of a ~100k-video results store: `load_results` of a9c3d54 (schema 1) against this version (schema 2).

Builds, in a temporary folder, the same synthetic run twice (946 prompts x 5 samples x 21 configurations = 99,330
videos; 12 cascade configurations with 2 stages, 9 single-stage with 1; 4 metrics per video = 397,320 metric rows):
once as a schema-1 store through a9c3d54's own `fvbench/store.py` (read at run time with `git show`, not committed),
once as schema 2 through this one, both with `executemany`. Then times `load_results` old/new alternately, 3 times
each, and prints the medians. Run from the repository: `python benchmarks/bench_store_load.py`.

Measured 2026-12-02 03:16 UTC on an idle machine (nothing else running), `python benchmarks/bench_store_load.py`:

    store: 99330 videos, 397320 metric rows; built both schemas in 8.4 s (executemany)
    device: cpu (AMD EPYC), 2 logical cores; load_results is single-threaded pandas/numpy
    load_results, median of 3 alternating runs: a9c3d54 (schema 1) 3.00 s [3.91, 3.00, 2.97], this version (schema 2) 4.18 s [4.18, 4.21, 3.76]; ratio old/new 0.7x; frames (99330, 78) vs (99330, 84)

So schema 2 loads about 1.4x SLOWER than schema 1 and the 2 s target is not met. A profile of the new path (3.9 s):
fetchall of the joined units/stages rows 1.55 s, the ORDER BY query 0.47 s, numpy conversion 0.52 s, the metric
scatter 0.48 s: fetching ~8M cells as Python objects from SQLite alone is about 1.5 s, so under 2 s needs a columnar
path (e.g. a snapshot keyed by the store's change counter), not a faster pivot.

Earlier, measured 2026-12-02 03:05 UTC, `python benchmarks/bench_store_load.py`, on a machine whose 2 cores were shared
with other jobs (load average 8-9, so every figure is inflated 2-4x and the repeats spread widely; the 2 s target
could not be shown under that load and is NOT claimed here; rerun on an idle machine):

    store: 99330 videos, 397320 metric rows; built both schemas in 31.4 s (executemany)
    device: cpu (AMD EPYC), 2 logical cores; load_results is single-threaded pandas/numpy
    load_results, median of 3 alternating runs: a9c3d54 (schema 1) 7.43 s [18.24, 7.43, 3.34], this version (schema 2) 6.59 s [17.31, 6.59, 5.74]; ratio old/new 1.1x; frames (99330, 78) vs (99330, 84)
"""

from __future__ import annotations

import importlib.util
import os
import platform
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
    """(unit row, [stage dicts], {metric: value}) of the synthetic run, deterministic."""
    rng = np.random.default_rng(0)
    configs = [(f"cpu-flashvideo-s_s1-{10 * (k % 4 + 1)}_s2-{2 ** (k // 4)}", 2) for k in range(CASCADES)]
    configs += [(f"cpu-dit-{'sml'[k // 3]}_s1-{10 * (k % 3 + 1)}", 1) for k in range(SINGLES)]
    for config, n in configs:
        for p in range(PROMPTS):
            for s in range(SAMPLES):
                h = f"{config}/{p}/{s}"
                row = {"unit_hash": h, "config_hash": config, "config": config, "preset": config.split("_")[0],
                       "family": "cascade" if n == 2 else "single-stage", "size": "s", "frames": 16,
                       "suite": "vbench", "prompt_id": f"p{p:04d}", "prompt": f"prompt number {p}",
                       "sample": s, "seed": p * 10 + s, "status": "done", "attempts": 1, "text_encode_s": 0.1,
                       "total_s": float(rng.random()), "wall_s": 1.0, "flops_total": 10 ** 12 * n,
                       "device": "cpu", "threads": 2, "finished_at": 1.0}
                stages = [{"name": f"stage{i}", "nfe": 10, "nfe_executed": 10, "cfg": 6.0, "height": 64,
                           "width": 64, "solver": "flow-euler", "denoise_s": float(rng.random()), "seconds": 1.0,
                           "shared": 0, "flops": 10 ** 12, "params": 10 ** 6, "video_sha256": f"{h}#{i}",
                           "video_path": f"videos/{h}-{i}.mp4", "video_bytes": 1000 + i} for i in range(1, n + 1)]
                yield row, stages, dict(zip(METRICS, rng.random(len(METRICS)).tolist()))


def _insert(conn, table: str, cols: list[str], rows: list[tuple]) -> None:
    conn.execute("BEGIN")
    conn.executemany(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)})", rows)
    conn.execute("COMMIT")


def build(old, run1: Path, run2: Path) -> float:
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


def main() -> None:
    old = old_store_module()
    with tempfile.TemporaryDirectory() as tmp:
        run1, run2 = Path(tmp) / "schema1", Path(tmp) / "schema2"
        run1.mkdir(), run2.mkdir()
        built = build(old, run1, run2)
        times: dict[str, list[float]] = {"old": [], "new": []}
        shapes = {}
        for _ in range(3):
            for name, fn, run in (("old", old.load_results, run1), ("new", new_store.load_results, run2)):
                t = time.perf_counter()
                df = fn(run)
                times[name].append(time.perf_counter() - t)
                shapes[name] = df.shape
        cpu = platform.processor() or platform.machine()
        try:
            cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
        except (OSError, StopIteration):
            pass
        old_s, new_s = statistics.median(times["old"]), statistics.median(times["new"])
        print(f"store: {shapes['new'][0]} videos, {shapes['new'][0] * len(METRICS)} metric rows; built both "
              f"schemas in {built:.1f} s (executemany)")
        print(f"device: cpu ({cpu}), {os.cpu_count()} logical cores; load_results is single-threaded pandas/numpy")
        print(f"load_results, median of 3 alternating runs: a9c3d54 (schema 1) {old_s:.2f} s "
              f"[{', '.join(f'{t:.2f}' for t in times['old'])}], this version (schema 2) {new_s:.2f} s "
              f"[{', '.join(f'{t:.2f}' for t in times['new'])}]; ratio old/new {old_s / new_s:.1f}x; "
              f"frames {shapes['old']} vs {shapes['new']}")


if __name__ == "__main__":
    main()
