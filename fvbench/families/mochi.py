"""Plug-in: Mochi 1 (diffusers' MochiPipeline) as pipeline ``mochi`` and its component types.

Light to import: it only registers; the generator and FLOP rule live in :mod:`fvbench.families._mochi`. Mochi's text
side is T5-v1.1-XXL, fvbench's own ``t5-encoder`` / ``t5-tokenizer`` types.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from fvbench.families._checks import check_options
from fvbench.generation.models.registry import (DIFFUSERS_WEIGHTS, ComponentType, VaeGeometry, build_diffusers,
                                                load_diffusers, register_component_type)
from fvbench.generation.pipelines import PipelineInfo, register_pipeline

if TYPE_CHECKING:
    from fvbench.generation.presets import Preset


def _latent_frames(frames: int) -> int:
    if frames <= 0 or (frames - 1) % 6:
        raise ValueError(f"frames must be of the form 6k+1 (the Mochi VAE compresses time 6x and drops the first 5 "
                         f"decoded frames: 7, 13, ..., 163); got {frames}")
    return (frames - 1) // 6 + 1


MOCHI_GEOMETRY = VaeGeometry(lambda c: math.prod(c.get("spatial_expansions", (2, 2, 2))), _latent_frames)

for _ct in (
    ComponentType("mochi-transformer", build_diffusers("MochiTransformer3DModel"),
                  load_diffusers("MochiTransformer3DModel"), DIFFUSERS_WEIGHTS),
    ComponentType("mochi-vae", build_diffusers("AutoencoderKLMochi"), load_diffusers("AutoencoderKLMochi"), DIFFUSERS_WEIGHTS, vae=MOCHI_GEOMETRY),
):
    register_component_type(_ct)

register_pipeline(PipelineInfo(
    "mochi", "fvbench.families._mochi:MochiGenerator", ("flow-match-euler",), ("noise",),
    flops="fvbench.families._mochi:preset_flops", validate=f"{__name__}:validate",
    description="Mochi 1 as diffusers' MochiPipeline runs it (masked T5, linear-quadratic sigmas, batched CFG)"))


OPTIONS: dict[str, type | tuple[type, ...]] = {
    "scheduler": dict,  # FlowMatchEulerDiscreteScheduler arguments (the folder's scheduler_config.json)
    "threshold_noise": (int, float),  # where the linear part of the schedule ends (the pipeline's 0.025)
    "linear_steps": int,  # steps in the linear part (default: half the steps, as the pipeline)
}


def validate(preset: "Preset") -> None:
    """Options known and typed, the schedule's threshold in (0, 1), its linear part shorter than the stage."""
    for s in preset.stages:
        check_options(s, OPTIONS)
        if not 0 < s.options.get("threshold_noise", 0.025) < 1:
            raise ValueError(f"stage {s.name!r}: threshold_noise must be in (0, 1)")
        if "linear_steps" in s.options and not 1 <= s.options["linear_steps"] < s.nfe:
            raise ValueError(f"stage {s.name!r}: linear_steps must be in [1, nfe)")
