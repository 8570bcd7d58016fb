"""Harness overhead: time through `fvbench run` / the same generations called directly, measured in one run.

Direct = a plain loop that loads the generator once, calls Generator.generate per video and writes its mp4.
Harness = the runner (plan, hashing, FLOP lookup, store commits, video writing) on the same units, in-process.
Single-stage units are used so that stage sharing does not flatter the harness.
Usage: python benchmarks/bench_overhead.py [--preset cpu-dit-s] [--nfe 10,20,30,50] [--prompts 3]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from fvbench.generation.generator import Generator  # noqa: E402
from fvbench.provenance import provenance  # noqa: E402
from fvbench.runfiles import vbench_file_name  # noqa: E402
from fvbench.runner import Plan, execute  # noqa: E402
from fvbench.spec import SweepOptions, config_points, expand_units, group_units  # noqa: E402
from fvbench.suites import Prompt, Suite  # noqa: E402
from fvbench.video import write_mp4  # noqa: E402
from fvbench.worker import GroupWorker  # noqa: E402
from fvbench.compute.flops import preset_flops  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="cpu-dit-s")
    ap.add_argument("--nfe", default="10,20,30,50")
    ap.add_argument("--prompts", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(2)
    nfes = tuple(int(x) for x in args.nfe.split(","))
    points = config_points(SweepOptions(presets=(args.preset,), stage1_nfe=nfes))
    suite = Suite("bench", tuple(Prompt(f"p{i}", f"a red cat number {i}") for i in range(args.prompts)), "0" * 64, "b")
    units = expand_units(points, suite, 1)
    with tempfile.TemporaryDirectory() as tmp:
        worker = GroupWorker(Path(tmp) / "run", provenance("cpu"), ("bench", "0" * 64))
        comps = worker.components(args.preset)
        Generator(units[0].config.preset, comps).generate("warm up", 0)
        t = time.perf_counter()
        for u in units:
            video = Generator(u.config.preset, comps).generate(u.prompt.text, u.seed).video
            write_mp4(video, Path(tmp) / "direct" / u.config.label / vbench_file_name(u.prompt.text, u.sample)[0])
        direct = time.perf_counter() - t
        t = time.perf_counter()
        plan = Plan(suite, len(suite.prompts), 1, tuple(points), tuple(units), tuple(group_units(units)),
                    {p.config_hash: preset_flops(p.preset) for p in points})
        summary = execute(plan, Path(tmp) / "run", worker)
        harness = time.perf_counter() - t
    assert summary.done == len(units)
    print(f"preset {args.preset}, NFE {nfes}, {args.prompts} prompts, {len(units)} videos, CPU {torch.get_num_threads()} threads, 1 run each")
    print(f"direct generate+write: {direct:.2f} s; through the runner (plan, store, videos): {harness:.2f} s")
    print(f"harness/direct wall-time ratio: {harness / direct:.3f} (target <= 1.05)")


if __name__ == "__main__":
    main()
