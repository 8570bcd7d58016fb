"""The FlashVideo paper's compute comparison, from counted FLOPs: FlashVideo vs single-stage vs vanilla cascade.

Rows are presets (or one stage of a preset); the paper's reported times (GPU not named; VAE decode excluded) are
set beside the FLOP ratios, and a latency is projected for a GPU from its peak dense throughput and an assumed
utilisation, both stated with the result.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from fvbench.compute.flops import preset_flops
from fvbench.errors import FvbenchError, UnknownNameError
from fvbench.generation.presets import get_preset

# Peak dense bf16 tensor throughput, TFLOP/s (vendor data sheets, without sparsity).
GPU_PEAK_TFLOPS = {"H100-SXM": 989.0, "H100-PCIe": 756.0, "A100": 312.0, "L40S": 362.0, "RTX4090": 165.2}


@dataclass(frozen=True)
class CompareRow:
    label: str
    preset: str
    stage: str | None  # one stage of the preset only, or None for the whole preset
    paper_seconds: float | None  # the paper's reported time (VAE decode excluded)
    setting: str  # which setting the row follows: the paper's, the release's, or a cost-only proxy
    nfe: dict[str, int] | None = None  # per-stage NFE overrides of the preset (the paper's setting)


PAPER_NFE = {"stage1": 50, "stage2": 4}  # arXiv 2502.05179's timed setting; the release runs 51 + 5

COMPARISONS: dict[str, tuple[CompareRow, ...]] = {
    "flashvideo-1080p": (
        CompareRow("FlashVideo (stage I 50 NFE 256x480 + stage II 4 NFE 1072x1920)", "flashvideo", None, 102.3,
                   "paper", PAPER_NFE),
        CompareRow("FlashVideo as released (stage I 51 NFE + stage II 5 NFE)", "flashvideo", None, None, "release"),
        CompareRow("single-stage 5B DiT at 1072x1920, 50 NFE", "cogvideox-5b-1080p", None, 2150.0, "paper"),
        CompareRow("vanilla cascade (stage II from noise, 50 NFE)", "flashvideo-vanilla-cascade", None, 571.5,
                   "cost-only proxy", {"stage1": 50}),
        CompareRow("FlashVideo stage II alone (4 NFE at 1072x1920)", "flashvideo", "stage2", 72.2, "paper", PAPER_NFE),
        CompareRow("FlashVideo stage I alone (50 NFE at 256x480)", "flashvideo", "stage1", 30.1, "paper", PAPER_NFE),
    ),
}

# What each comparison's paper rows leave unstated, printed under the table.
NOTES: dict[str, tuple[str, ...]] = {
    "flashvideo-1080p": (
        "paper rows use the paper's NFE (stage I 50, stage II 4) on the release's samplers; the release row is what "
        "`--preset flashvideo` runs (FoundationVision/FlashVideo@8de4ae2: 51 + 5 NFE)",
        "vanilla cascade: a cost-only proxy (the released stage-II weights start from degraded latents, not noise); the "
        "paper reports 571.5 s without an NFE or resolution fvbench's sources state, so 50 NFE at 1072x1920 is an "
        "assumption: its FLOP ratio is not comparable with the paper's time ratio",
    ),
}


def compare(name: str) -> list[dict]:
    """Rows of a named comparison: FLOPs without and with the VAE, ratios to the first row, paper time ratios."""
    if name not in COMPARISONS:
        raise UnknownNameError("comparison", name, list(COMPARISONS))
    rows = []
    for r in COMPARISONS[name]:
        preset = get_preset(r.preset)
        if r.nfe:
            preset = preset.with_overrides({stage: {"nfe": n} for stage, n in r.nfe.items()})
        f = preset_flops(preset)
        if r.stage is None:
            model = f["text_encode"] + sum(s["denoise"] for s in f["stages"].values())
            vae = sum(s["vae_encode"] + s["vae_decode"] for s in f["stages"].values())
        else:
            s = f["stages"][r.stage]
            model, vae = s["denoise"], s["vae_encode"] + s["vae_decode"]
        rows.append({"configuration": r.label, "preset": r.preset, "stage": r.stage or "all", "setting": r.setting,
                     "nfe": [st.nfe for st in preset.stages], "model_flops": model, "vae_flops": vae,
                     "paper_seconds": r.paper_seconds})
    base = rows[0]
    for row in rows:
        row["flop_ratio"] = row["model_flops"] / base["model_flops"]
        row["paper_time_ratio"] = (row["paper_seconds"] / base["paper_seconds"]
                                   if row["paper_seconds"] and base["paper_seconds"] else None)
    return rows


def projected_seconds(flops: float, peak_tflops: float, utilization: float) -> float:
    """Latency at ``utilization`` of a GPU's peak dense throughput."""
    return flops / (peak_tflops * 1e12 * utilization)


# -- across model families -----------------------------------------------------------------------------------------
COMMON_SIZE = (720, 1280, 5.0)  # the cross-family table's output: height, width, seconds of video
FAMILY_GPUS = ("H100-SXM", "A100", "RTX4090")


def _round_to(value: float, multiple: int) -> int:
    return max(multiple, int(round(value / multiple)) * multiple)


def _frames_for(preset, seconds: float) -> int:
    """The smallest frame count the preset's VAE takes that covers ``seconds`` at its native fps."""
    n = max(1, int(round(seconds * preset.fps)))
    for frames in range(n, n + 64):
        try:
            preset.with_overrides(frames=frames)  # the VAE's frame rule, as any frame override is checked
            return frames
        except FvbenchError:
            continue
    raise ValueError(f"preset {preset.name!r}: no valid frame count near {n}")


def at_output_size(preset, height: int, width: int, seconds: float):
    """The preset producing ``height`` x ``width`` over ``seconds`` at its own fps: the last stage at that size
    (rounded to what the model takes), earlier stages scaled by the same factor (a cascade keeps its ratios)."""
    last = preset.stages[-1]
    sh, sw = height / last.height, width / last.width
    overrides = {}
    for s in preset.stages:
        f = preset.spatial_factor(s)
        overrides[s.name] = {"height": _round_to(s.height * sh, f), "width": _round_to(s.width * sw, f)}
    frames = _frames_for(preset, seconds)
    try:
        return preset.with_overrides(overrides, frames)
    except FvbenchError:
        # a cascade whose stages must keep an exact integer ratio (LTX-Video's x2 latent upsampler): round the last
        # stage to a size every such earlier stage divides, then divide
        mh = mw = preset.spatial_factor(last)
        for s in preset.stages[:-1]:
            f = preset.spatial_factor(s)
            if last.height % s.height == 0:
                mh = math.lcm(mh, last.height // s.height * f)
            if last.width % s.width == 0:
                mw = math.lcm(mw, last.width // s.width * f)
        h, w = _round_to(height, mh), _round_to(width, mw)
        for s in preset.stages:
            f = preset.spatial_factor(s)
            overrides[s.name] = {
                "height": h // (last.height // s.height) if last.height % s.height == 0 else _round_to(s.height * h / last.height, f),
                "width": w // (last.width // s.width) if last.width % s.width == 0 else _round_to(s.width * w / last.width, f)}
        return preset.with_overrides(overrides, frames)


def family_presets() -> list[str]:
    """The presets of real models (weights of the user's, not built in code or cost-only), one per row."""
    from fvbench.generation.presets import all_presets

    return [n for n, p in all_presets().items() if not p.cpu_scale and not p.cost_only]


def family_compare(height: int = COMMON_SIZE[0], width: int = COMMON_SIZE[1], seconds: float = COMMON_SIZE[2],
                   names: list[str] | None = None) -> list[dict]:
    """Every real preset at one common output size, counted on meta: FLOPs per video without and with the VAE."""
    from fvbench.spec import canonical_hash, preset_identity

    rows: list[dict] = []
    seen: dict[str, dict] = {}
    for name in names or family_presets():
        base = get_preset(name)
        p = at_output_size(base, height, width, seconds)
        ident = preset_identity(p)
        ident.pop("vae_tiling")  # a memory setting: the same model at the same size is one row
        key = canonical_hash(ident)
        if key in seen:  # e.g. cogvideox-5b and cogvideox-5b-1080p are one model once scaled to the common size
            seen[key]["same_as"].append(name)
            continue
        f = preset_flops(p)
        model = f["text_encode"] + sum(s["denoise"] for s in f["stages"].values())
        vae = sum(s["vae_encode"] + s["vae_decode"] + s.get("upsample", 0) for s in f["stages"].values())
        rows.append({"preset": name, "family": base.family, "pipeline": base.pipeline, "frames": p.frames,
                     "fps": p.fps, "seconds": p.frames / p.fps, "height": p.stages[-1].height,
                     "width": p.stages[-1].width, "stages": [f"{s.height}x{s.width} {s.nfe} NFE" for s in p.stages],
                     "model_flops": model, "vae_flops": vae, "total_flops": f["total"],
                     "native": [(s.height, s.width) for s in base.stages] == [(s.height, s.width) for s in p.stages]
                     and base.frames == p.frames, "same_as": []})
        seen[key] = rows[-1]
    rows.sort(key=lambda r: r["total_flops"])
    return rows
