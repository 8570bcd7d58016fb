"""Wan plug-in (light: no torch here): the Wan component types and the ``wan`` pipeline.

Wan 2.1 (``WanPipeline`` with one transformer) is a single stage; Wan 2.2 A14B (``WanPipeline`` with
``transformer_2`` and ``boundary_ratio``) is a two-stage cascade: the high-noise expert, then the low-noise expert
continuing from its latents (stage init ``latents``). The heavy code is in :mod:`fvbench.families._wan`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fvbench.generation.models.registry import (DIFFUSERS_WEIGHTS, TRANSFORMERS_WEIGHTS, ComponentType, VaeGeometry,
                                                build_diffusers, build_transformers, load_diffusers,
                                                load_transformers, register_component_type)
from fvbench.generation.pipelines import PipelineInfo, register_pipeline

if TYPE_CHECKING:
    from fvbench.generation.presets import Preset

_HEAVY = "fvbench.families._wan"
SCHEDULES = ("split", "shared")


def _heavy(name: str):
    import importlib

    return getattr(importlib.import_module(_HEAVY), name)


def wan_latent_frames(frames: int) -> int:
    """Wan's VAE: 4x temporal compression with the first frame apart, so frames must be 4k+1."""
    if frames <= 0 or (frames - 1) % 4:
        raise ValueError(f"frames must be of the form 4k+1 (5, 9, ..., 81) for the Wan VAE; got {frames}")
    return (frames - 1) // 4 + 1


def _wan_spatial_factor(config: dict[str, Any]) -> int:
    # one 2x spatial downsample per level after the first (dim_mult [1, 2, 4, 4] -> 8), times a pixel patch (2.2 5B)
    return 2 ** (len(config.get("dim_mult", (1, 2, 4, 4))) - 1) * int(config.get("patch_size") or 1)


def _wan_patch(config: dict[str, Any]) -> int:
    p = list(config.get("patch_size", (1, 2, 2)))
    if len(p) != 3 or p[1] != p[2]:
        raise ValueError(f"wan-transformer patch_size must be [t, p, p], got {p}")
    return int(p[1])


for _ct in (
    ComponentType("wan-transformer", build_diffusers("WanTransformer3DModel"),
                  load_diffusers("WanTransformer3DModel"), DIFFUSERS_WEIGHTS, spatial_multiple=_wan_patch),
    ComponentType("wan-vae", build_diffusers("AutoencoderKLWan"), load_diffusers("AutoencoderKLWan"),
                  DIFFUSERS_WEIGHTS, vae=VaeGeometry(_wan_spatial_factor, wan_latent_frames)),
    ComponentType("umt5-encoder", build_transformers("UMT5EncoderModel", "UMT5Config"),
                  load_transformers("UMT5EncoderModel", checked=False), TRANSFORMERS_WEIGHTS),
    # the published scheduler/scheduler_config.json; built from the preset's copy of its values for builtin presets
    ComponentType("unipc-scheduler", build_diffusers("UniPCMultistepScheduler"),
                  lambda p, d: _heavy("load_scheduler")(p, d), ("scheduler_config.json",), meta_ok=False,
                  config_file="scheduler_config.json"),
):
    register_component_type(_ct, origin=__name__)


def validate(preset: "Preset") -> None:
    """Raise ValueError when a Wan preset's stages do not chain as :class:`~fvbench.families._wan.WanGenerator` needs.

    Stage 1 starts from noise, every later stage continues the previous one's latents (init ``latents``) at the same
    resolution; an expert split names its ``boundary_ratio`` on stage 1; ``schedule: shared`` (diffusers' one grid)
    needs ``grid_steps`` on stage 1 and gives the last stage exactly the steps left of it.
    """
    if "scheduler" not in preset.components:
        raise ValueError("a wan preset needs a 'scheduler' component (type unipc-scheduler)")
    from fvbench.generation.pipelines import own_stages

    stages = own_stages(preset, "wan")  # in a cross-family cascade, only the stages Wan runs
    first = stages[0]
    n = len(stages)
    if n > 2:
        raise ValueError(f"the wan pipeline runs one stage or a two-expert split, got {n} stages")
    known = {"flow_shift", "boundary_ratio", "schedule", "grid_steps", "decode"}
    for s in stages:
        unknown = sorted(set(s.options) - known)
        if unknown:
            raise ValueError(f"stage {s.name!r}: unknown wan option(s) {unknown}; known: {sorted(known)}")
        if s.options.get("schedule", "split") not in SCHEDULES:
            raise ValueError(f"stage {s.name!r}: schedule must be one of {SCHEDULES}, got {s.options['schedule']!r}")
    for s in stages[1:]:
        if s.init != "latents":
            raise ValueError(f"stage {s.name!r}: a later wan stage continues the previous latents (init: latents)")
        if (s.height, s.width) != (first.height, first.width):
            raise ValueError(f"stage {s.name!r}: an expert continues the latents at {first.height}x{first.width}, "
                             f"got {s.height}x{s.width}")
        if "boundary_ratio" in s.options or "grid_steps" in s.options:
            raise ValueError(f"stage {s.name!r}: boundary_ratio and grid_steps belong to the first stage")
    if first.init != "noise":
        raise ValueError(f"stage {first.name!r}: the first wan stage starts from noise")
    if n == 1:
        if "boundary_ratio" in first.options:
            raise ValueError(f"stage {first.name!r}: boundary_ratio needs a second (low-noise) stage")
        return
    ratio = first.options.get("boundary_ratio")
    if not isinstance(ratio, (int, float)) or not 0.0 < ratio < 1.0:
        raise ValueError(f"stage {first.name!r}: an expert split needs boundary_ratio in (0, 1), got {ratio!r}")
    schedules = [s.options.get("schedule", "split") for s in stages]
    if len(set(schedules)) != 1:
        raise ValueError(f"both experts use the same schedule (split or shared), got {schedules}")
    if schedules[0] == "shared":
        grid = first.options.get("grid_steps")
        if not isinstance(grid, int) or grid <= first.nfe:
            raise ValueError(f"stage {first.name!r}: schedule shared needs grid_steps (diffusers' "
                             f"num_inference_steps) above its nfe {first.nfe}, got {grid!r}")
        last = stages[-1]
        if last.nfe != grid - first.nfe:
            raise ValueError(f"stage {last.name!r}: with schedule shared the low-noise expert takes the "
                             f"{grid - first.nfe} steps left of diffusers' {grid}-step grid, not nfe {last.nfe} "
                             f"(sweep the split with schedule: split)")
        if "flow_shift" in last.options and last.options["flow_shift"] != first.options.get("flow_shift"):
            raise ValueError(f"stage {last.name!r}: schedule shared continues stage 1's scheduler; set flow_shift "
                             f"on the first stage only")


register_pipeline(PipelineInfo(
    "wan", f"{_HEAVY}:WanGenerator", ("unipc",), ("noise", "latents"), flops=f"{_HEAVY}:preset_flops",
    validate=f"{__name__}:validate",
    description="Wan 2.1 (WanPipeline) and the Wan 2.2 A14B expert split (high-noise then low-noise transformer)"),
    origin=__name__)
