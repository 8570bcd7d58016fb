"""The FlashVideo paper's compute comparison, from counted FLOPs: FlashVideo vs single-stage vs vanilla cascade.

Rows are presets (or one stage of a preset); the paper's reported times (GPU not named; VAE decode excluded) are
set beside the FLOP ratios, and a latency is projected for a GPU from its peak dense throughput and an assumed
utilisation, both stated with the result.
"""

from __future__ import annotations

from dataclasses import dataclass

from fvbench.compute.flops import preset_flops
from fvbench.errors import UnknownNameError
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
