"""ShapesWorld evaluation: the issue's "Done when" numbers, measured through the generator on this machine.

Prompts and seeds: suites/shapesworld.yaml (the 18 held-out combinations x 8 samples = 144 videos, seeds from
fvbench's derive_seed, as `fvbench run` uses). Everything runs through fvbench.generation.Generator with the
presets of baselines/shapesworld.yaml and the weights shipped in the package.

Sections (--sections):
  stage1   stage I alone (30 NFE, CFG 2): colour / shape / direction / all-three accuracy on held-out combinations
  stage2   stage II from the TRUE 16x16 input at NFE 1, 2, 4, 8 vs bilinear upsampling: fidelity PSNR, consistency
           PSNR (4x pool vs input), detail ratio (1.0 = real world), temporal RMS
  compare  the cascade (stage I 30 + stage II 4) vs the single-stage baseline at 50 NFE on the same units:
           all-three accuracy, detail ratio, FLOPs per video (fvbench.compute.flops.preset_flops)
  vanilla  the vanilla cascade (stage II from pure noise, step 999) at several NFE: detail and accuracy
Costs: FLOPs counted once per configuration on the meta device (multiply-add = 2), as `fvbench run` stores them.

Usage: python benchmarks/shapesworld_eval.py [--threads 2] [--compare-videos 18] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from fvbench.compute.flops import preset_flops
from fvbench.generation.generator import Generator
from fvbench.generation.presets import Preset, all_presets, get_preset
from fvbench.shapesworld.evaluate import (attribute_rates, bilinear, stage2_from_truth, suite_units, upscale_quality)
from fvbench.shapesworld.metrics import detail_ratio, temporal_rms_px
from fvbench.shapesworld.world import render_pair


def video_flops(preset: Preset) -> float:
    """FLOPs of one video, as `fvbench run` stores them (the identity VAE and the label encoder count 0)."""
    return float(preset_flops(preset)["total"])


def with_nfe(preset: Preset, **nfe: int) -> Preset:
    return preset.with_overrides({k: {"nfe": v} for k, v in nfe.items()})


def fmt(x: float, nd: int = 3) -> str:
    return "nan" if x is None or not np.isfinite(x) else f"{x:.{nd}f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sections", default="stage1,stage2,compare,vanilla")
    ap.add_argument("--cascades", default="sw-flashvideo-s,sw-flashvideo-m",
                    help="cascade presets for stage1 (those without shipped weights are skipped, and said so)")
    ap.add_argument("--stage2-nfe", default="1,2,4,8")
    ap.add_argument("--vanilla-nfe", default="4,8,16,30")
    ap.add_argument("--compare-videos", type=int, default=18,
                    help="units for the single-stage comparison (a 50-NFE 64x64 video costs about a minute here)")
    ap.add_argument("--vanilla-videos", type=int, default=36)
    ap.add_argument("--limit", type=int, help="held-out prompts to use (default all 18)")
    ap.add_argument("--json", help="write all numbers here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    sections = set(args.sections.split(","))
    shipped = set(all_presets())
    for name in sorted({*args.cascades.split(","), "sw-flashvideo-m", "sw-dit-s"} - shipped):
        print(f"note: preset {name} is not listed (its weights are not shipped); its rows are left out")
    if "sw-dit-s" not in shipped and "compare" in sections:
        print("note: no single-stage ShapesWorld baseline is shipped, so the compare section is skipped")
        sections.discard("compare")
    units = suite_units(limit=args.limit)
    out: dict = {"device": "cpu", "threads": args.threads, "videos_per_point": len(units)}
    print(f"ShapesWorld evaluation on cpu, {args.threads} threads; {len(units)} held-out videos per point "
          f"(suite shapesworld: {len({u.attrs for u in units})} combinations never seen in training)\n")

    if "stage1" in sections:
        print("## Stage I alone (16x16, 30 NFE, CFG 2), held-out combinations")
        print("| preset | stage-I params | colour | shape | direction | all three | temporal RMS px | seconds/video |")
        print("|---|---|---|---|---|---|---|---|")
        out["stage1"] = {}
        for name in [n for n in args.cascades.split(",") if n in shipped]:
            gen = Generator.from_preset(get_preset(name))
            t0 = time.perf_counter()
            outs = []
            for u in units:
                text, _ = gen.encode_text(u.attrs.prompt)
                outs.append(gen.run_stage(0, text, u.seed))
            sec = (time.perf_counter() - t0) / len(units)
            videos = [o.video.numpy() for o in outs]
            rates = attribute_rates(videos, units)
            rms = float(np.nanmean([temporal_rms_px(v) for v in videos]))
            params = gen.components.parameter_counts()["stage1"]
            out["stage1"][name] = {**rates, "temporal_rms_px": rms, "params": params, "seconds_per_video": sec}
            print(f"| {name} | {params / 1e6:.2f}M | {fmt(rates['colour'])} | {fmt(rates['shape'])} | "
                  f"{fmt(rates['direction'])} | {fmt(rates['all_three'])} | {fmt(rms, 2)} | {sec:.2f} |")
        print()

    if "stage2" in sections:
        print("## Stage II from the TRUE 16x16 input vs bilinear upsampling (64x64)")
        print("| method | NFE | fidelity PSNR dB | consistency PSNR dB | detail ratio | temporal RMS px | seconds/video |")
        print("|---|---|---|---|---|---|---|")
        gen = Generator.from_preset(get_preset("sw-flashvideo-s"))
        t0 = time.perf_counter()
        q = upscale_quality([bilinear(render_pair(u.attrs, u.seed)[1]) for u in units], units)
        out["bilinear"] = q
        print(f"| bilinear | - | {fmt(q['psnr'], 2)} | {fmt(q['consistency_psnr'], 2)} | {fmt(q['detail'])} | "
              f"{fmt(q['temporal_rms_px'], 2)} | {(time.perf_counter() - t0) / len(units):.3f} |")
        out["stage2"] = {}
        for nfe in [int(n) for n in args.stage2_nfe.split(",")]:
            t0 = time.perf_counter()
            q = upscale_quality(stage2_from_truth(gen, units, nfe), units)
            sec = (time.perf_counter() - t0) / len(units)
            out["stage2"][nfe] = {**q, "seconds_per_video": sec}
            print(f"| stage II (sw-flashvideo-s) | {nfe} | {fmt(q['psnr'], 2)} | {fmt(q['consistency_psnr'], 2)} | "
                  f"{fmt(q['detail'])} | {fmt(q['temporal_rms_px'], 2)} | {sec:.2f} |")
        print()

    if "compare" in sections:
        sub = units[:: max(1, len(units) // args.compare_videos)][: args.compare_videos]
        print(f"## Cascade vs single-stage, {len(sub)} videos (one per held-out prompt and sample subset)")
        print("| preset | NFE | GFLOP/video | FLOPs vs single | colour | shape | direction | all three | detail ratio "
              "| temporal RMS px | seconds/video |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        single = get_preset("sw-dit-s")
        single_flops = video_flops(single)
        out["compare"] = {"videos": len(sub)}
        for name, preset in [(n, get_preset(n)) for n in ("sw-flashvideo-s", "sw-flashvideo-m") if n in shipped] + [
                ("sw-dit-s", single)]:
            gen = Generator.from_preset(preset)
            t0 = time.perf_counter()
            videos = [gen.generate(u.attrs.prompt, u.seed).video.numpy() for u in sub]
            sec = (time.perf_counter() - t0) / len(sub)
            rates = attribute_rates(videos, sub)
            det = float(np.mean([detail_ratio(v, u.attrs) for v, u in zip(videos, sub)]))
            rms = float(np.nanmean([temporal_rms_px(v) for v in videos]))
            fl = video_flops(preset)
            nfe = "/".join(str(s.nfe) for s in preset.stages)
            out["compare"][name] = {**rates, "detail": det, "temporal_rms_px": rms, "flops": fl,
                                    "flops_ratio": fl / single_flops, "seconds_per_video": sec, "nfe": nfe}
            print(f"| {name} | {nfe} | {fl / 1e9:.1f} | {fl / single_flops:.3f} | {fmt(rates['colour'])} | "
                  f"{fmt(rates['shape'])} | {fmt(rates['direction'])} | {fmt(rates['all_three'])} | {fmt(det)} | "
                  f"{fmt(rms, 2)} | {sec:.1f} |")
        print()

    if "vanilla" in sections:
        sub = units[:: max(1, len(units) // args.vanilla_videos)][: args.vanilla_videos]
        print(f"## Vanilla cascade: stage II from pure noise (step 999), {len(sub)} videos; stage I as sw-flashvideo-s")
        print("| preset | stage-II NFE | GFLOP/video | all three | detail ratio | temporal RMS px |")
        print("|---|---|---|---|---|---|")
        gen = Generator.from_preset(get_preset("sw-vanilla-cascade-s"))
        out["vanilla"] = {"videos": len(sub)}
        for nfe in [int(n) for n in args.vanilla_nfe.split(",")]:
            preset = with_nfe(gen.preset, stage2=nfe)
            g = Generator(preset, gen.components)
            videos = [g.generate(u.attrs.prompt, u.seed).video.numpy() for u in sub]
            rates = attribute_rates(videos, sub)
            det = float(np.mean([detail_ratio(v, u.attrs) for v, u in zip(videos, sub)]))
            rms = float(np.nanmean([temporal_rms_px(v) for v in videos]))
            out["vanilla"][nfe] = {**rates, "detail": det, "temporal_rms_px": rms, "flops": video_flops(preset)}
            print(f"| sw-vanilla-cascade-s | {nfe} | {video_flops(preset) / 1e9:.1f} | {fmt(rates['all_three'])} | "
                  f"{fmt(det)} | {fmt(rms, 2)} |")
        print()

    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1, default=float)
        print(f"numbers written to {args.json}")


if __name__ == "__main__":
    main()
