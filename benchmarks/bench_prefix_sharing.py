"""Stage-prefix sharing: wall time of a 4x4 NFE sweep with sharing / without, measured in one run.

Shared = fvbench's worker (text encoded once, each stage I once, each stage-II init once, then 16 stage-II runs).
Naive = 16 independent end-to-end generations. Both produce bitwise-identical videos (checked here too).
Usage: python benchmarks/bench_prefix_sharing.py [--preset cpu-flashvideo-s] [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from fvbench.compute.flops import preset_flops  # noqa: E402
from fvbench.generation.generator import Generator, load_components  # noqa: E402
from fvbench.generation.presets import get_preset  # noqa: E402
from fvbench.provenance import provenance  # noqa: E402
from fvbench.spec import SweepOptions, config_points, expand_units, group_units  # noqa: E402
from fvbench.suites import Prompt, Suite  # noqa: E402
from fvbench.worker import GroupWorker, video_sha256  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="cpu-flashvideo-s")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(2)
    points = config_points(SweepOptions(presets=(args.preset,), nfe_sweep=True))
    suite = Suite("bench", (Prompt("p0", "a red cat running on the beach"),), "0" * 64, "bench")
    units = expand_units(points, suite, 1)
    (group,) = group_units(units)
    comps = load_components(get_preset(args.preset))
    shared_t, naive_t = [], []
    with tempfile.TemporaryDirectory() as tmp:
        worker = GroupWorker(tmp, provenance("cpu"), ("bench", "0" * 64), save_videos="none")
        worker._components[args.preset] = comps
        Generator(units[0].config.preset, comps).generate(units[0].prompt.text, units[0].seed)  # warm-up
        for _ in range(args.repeats):
            t = time.perf_counter()
            rows = {r.row["unit_hash"]: r.row["s2_video_sha256"] for r in worker.process(group, set())}
            shared_t.append(time.perf_counter() - t)
            t = time.perf_counter()
            naive = {}
            for u in units:
                naive[u.unit_hash] = video_sha256(Generator(u.config.preset, comps).generate(u.prompt.text, u.seed).video)
            naive_t.append(time.perf_counter() - t)
            assert rows == naive, "shared and naive sweeps must give identical videos"
    ratio = [s / n for s, n in zip(shared_t, naive_t)]
    # What sharing can save at most, by FLOPs: stage I (and the stage-II init) once per stage-I setting,
    # stage-II denoising and decoding once per video.
    naive_f = shared_f = 0
    seen: set[str] = set()
    for u in units:
        f = preset_flops(u.config.preset)
        s1, s2 = f["stages"]["stage1"], f["stages"]["stage2"]
        naive_f += f["total"]
        shared_f += s2["denoise"] + s2["vae_decode"]
        if u.prefix_key not in seen:
            seen.add(u.prefix_key)
            shared_f += f["text_encode"] + s1["total"] + s2["vae_encode"]
    print(f"preset {args.preset}, 4x4 NFE grid (stage I 10/20/30/50 x stage II 1/2/4/8), 1 prompt, 16 videos, "
          f"CPU {torch.get_num_threads()} threads, {args.repeats} repeats (shared and naive alternated)")
    for i, (s, n, r) in enumerate(zip(shared_t, naive_t, ratio)):
        print(f"  repeat {i}: shared {s:.1f} s, naive {n:.1f} s, shared/naive {r:.3f}")
    print(f"shared/naive wall-time ratio: median {sorted(ratio)[len(ratio) // 2]:.3f} (target <= 0.45)")
    print(f"by FLOPs the same sweep shares {shared_f / naive_f:.3f} of the naive work: stage II (decode included) "
          f"runs once per video whatever is shared, which bounds the saving")


if __name__ == "__main__":
    main()
