"""LTX-Video plug-in: component types and the ``ltx`` pipeline (diffusers' LTXPipeline, LTXConditionPipeline and
the LTXLatentUpsamplePipeline multiscale cascade). Light: no torch here; the generator is in ``_ltx.py``.

Solvers: ``ltx`` samples as ``LTXPipeline`` does (sigmas ``linspace(1, 1/N, N)`` shifted by ``mu`` from the video
sequence length, RoPE from ``rope_interpolation_scale``); ``ltx-condition`` as ``LTXConditionPipeline`` does (its
linear-quadratic timestep grid, RoPE from ``video_coords``, per-token scheduler step). Inits: ``noise``, and
``latent-upsample`` (the multiscale refine pass: the previous stage's latents through the latent upsampler, re-noised
at the sigma where ``denoise_strength`` starts, then the last ``nfe`` steps). A ``ltx-condition`` stage may give an
explicit ``timesteps`` list (the distilled models'); its NFE is then fixed by the list.
"""

from __future__ import annotations

from typing import Any

from fvbench.generation.models.registry import (DIFFUSERS_WEIGHTS, ComponentType, VaeGeometry, build_diffusers,
                                                load_diffusers, register_component_type)
from fvbench.generation.pipelines import PipelineInfo, register_pipeline
from fvbench.plugins import resolve

TEMPORAL_FACTOR = 8  # every published LTX-Video VAE (0.9.0 to 0.9.8) compresses time 8x, the first frame apart

# Stage options the ltx pipeline reads (name -> default), as diffusers' pipeline arguments of the same names
STAGE_OPTIONS: dict[str, Any] = {
    "guidance_rescale": 0.0,
    "frame_rate": 25,
    "decode_timestep": 0.0,
    "decode_noise_scale": None,  # None: equal to decode_timestep, as diffusers does
    "denoise_strength": 0.4,  # latent-upsample stages only (the 0.9.7-dev example's refine pass)
    "upsampler": "latent_upsampler",  # latent-upsample stages only: the component role of the upsampler
    "adain_factor": 0.0,
    "tone_map_compression_ratio": 0.0,
    "timesteps": None,  # ltx-condition only: an explicit timestep list (the distilled models'), as diffusers' timesteps=
}


def executed_steps(timesteps: list | None, strength: float, refine: bool) -> int | None:
    """Steps a stage with an explicit ``timesteps`` list runs: all of them, or (refine) the last
    ``min(int(N * denoise_strength), N)`` as diffusers' get_timesteps keeps; None without a list."""
    if timesteps is None:
        return None
    n = len(timesteps)
    return min(int(n * strength), n) if refine else n


def vae_ratios(config: dict[str, Any]) -> tuple[int, int]:
    """(spatial, temporal) compression of an AutoencoderKLLTXVideo config, as its constructor computes them."""
    scaling = config.get("spatio_temporal_scaling", (True, True, True, False))
    spatial = config.get("spatial_compression_ratio") or config.get("patch_size", 4) * 2 ** sum(map(bool, scaling))
    temporal = config.get("temporal_compression_ratio") or config.get("patch_size_t", 1) * 2 ** sum(map(bool, scaling))
    return int(spatial), int(temporal)


def _ltx_latent_frames(frames: int) -> int:
    if frames <= 0 or (frames - 1) % TEMPORAL_FACTOR:
        raise ValueError(f"frames must be of the form 8k+1 (9, 17, ..., 121, 161) for the LTX-Video VAE; got {frames}")
    return (frames - 1) // TEMPORAL_FACTOR + 1


def _lazy(name: str):
    def call(*args):
        return resolve(f"fvbench.families._ltx:{name}")(*args)

    call.__name__ = name
    return call


for _ct in (
    ComponentType("ltx-transformer", build_diffusers("LTXVideoTransformer3DModel"),
                  load_diffusers("LTXVideoTransformer3DModel"), DIFFUSERS_WEIGHTS,
                  spatial_multiple=lambda c: int(c.get("patch_size", 1))),
    ComponentType("ltx-vae", build_diffusers("AutoencoderKLLTXVideo"), load_diffusers("AutoencoderKLLTXVideo"),
                  DIFFUSERS_WEIGHTS, vae=VaeGeometry(lambda c: vae_ratios(c)[0], _ltx_latent_frames)),
    ComponentType("ltx-latent-upsampler", _lazy("build_upsampler"), _lazy("load_upsampler"), DIFFUSERS_WEIGHTS),
    # the scheduler is a folder too (scheduler/scheduler_config.json); it has no weights, its config file is its content
    ComponentType("ltx-scheduler", _lazy("build_scheduler"), _lazy("load_scheduler"), ("scheduler_config.json",),
                  meta_ok=False, config_file="scheduler_config.json"),
):
    register_component_type(_ct)


def validate(preset) -> None:
    """What the ltx pipeline needs beyond solver and init names (ValueError, one line each)."""
    comps = preset.components
    if "scheduler" not in comps or comps["scheduler"].type != "ltx-scheduler":
        raise ValueError("an ltx preset needs a 'scheduler' component of type ltx-scheduler")
    if comps["vae"].type != "ltx-vae":
        raise ValueError(f"an ltx preset needs an ltx-vae, got {comps['vae'].type!r}")
    if vae_ratios(comps["vae"].config)[1] != TEMPORAL_FACTOR:
        raise ValueError(f"the VAE's temporal compression must be {TEMPORAL_FACTOR}, got {vae_ratios(comps['vae'].config)[1]}")
    if preset.vae_tiling or preset.vae_encode_chunk:
        raise ValueError("the ltx pipeline decodes in one pass (no vae_tiling / vae_encode_chunk: no FLOP rule for them)")
    dynamic = bool(comps["scheduler"].config.get("use_dynamic_shifting", False))
    for i, s in enumerate(preset.stages):
        unknown = sorted(set(s.options) - set(STAGE_OPTIONS))
        if unknown:
            raise ValueError(f"stage {s.name!r}: unknown option(s) {', '.join(unknown)} (known: {', '.join(STAGE_OPTIONS)})")
        opts = {**STAGE_OPTIONS, **s.options}
        if opts["timesteps"] is not None:
            ts = opts["timesteps"]
            if s.solver != "ltx-condition":
                raise ValueError(f"stage {s.name!r}: option timesteps is LTXConditionPipeline's (solver ltx-condition)")
            if not isinstance(ts, list) or not ts or any(not isinstance(t, (int, float)) for t in ts) \
                    or any(a <= b for a, b in zip(ts, ts[1:])) or not 0 <= ts[-1] <= ts[0] <= 1000:
                raise ValueError(f"stage {s.name!r}: timesteps must be a descending list of numbers in [0, 1000]")
            runs = executed_steps(ts, float(opts["denoise_strength"]), s.init == "latent-upsample")
            if runs != s.nfe:
                raise ValueError(f"stage {s.name!r}: its {len(ts)} explicit timesteps run {runs} steps, but nfe is "
                                 f"{s.nfe} (with explicit timesteps the NFE is fixed by the list)")
        if s.solver == "ltx-condition" and dynamic:
            raise ValueError(f"stage {s.name!r}: LTXConditionPipeline's timestep grid needs a scheduler without "
                             f"use_dynamic_shifting (as the 0.9.5+ folders ship it)")
        if s.init != "latent-upsample":
            continue
        if s.solver != "ltx-condition":
            raise ValueError(f"stage {s.name!r}: the refine pass (init latent-upsample) runs LTXConditionPipeline's "
                             f"sampler, solver 'ltx-condition'")
        up = comps.get(opts["upsampler"])
        if up is None or up.type != "ltx-latent-upsampler":
            raise ValueError(f"stage {s.name!r}: upsampler {opts['upsampler']!r} is not an ltx-latent-upsampler component")
        if up.config.get("temporal_upsample", False) or not up.config.get("spatial_upsample", True):
            raise ValueError(f"stage {s.name!r}: only the spatial x2 latent upsampler is supported")
        prev = preset.stages[i - 1]
        if (s.height, s.width) != (2 * prev.height, 2 * prev.width):
            raise ValueError(f"stage {s.name!r}: the latent upsampler doubles {prev.height}x{prev.width} to "
                             f"{2 * prev.height}x{2 * prev.width}, not {s.height}x{s.width}")
        if not 0.0 < float(opts["denoise_strength"]) < 1.0:
            raise ValueError(f"stage {s.name!r}: denoise_strength must be in (0, 1), got {opts['denoise_strength']}")
        for k in ("adain_factor", "tone_map_compression_ratio"):
            if not 0.0 <= float(opts[k]) <= (1.0 if k.startswith("tone") else 10.0):
                raise ValueError(f"stage {s.name!r}: {k} out of range, got {opts[k]}")


register_pipeline(PipelineInfo(
    "ltx", "fvbench.families._ltx:LtxGenerator", ("ltx", "ltx-condition"), ("noise", "latent-upsample"),
    flops="fvbench.families._ltx:preset_flops", validate="fvbench.families.ltx:validate",
    description="LTX-Video (diffusers LTXPipeline / LTXConditionPipeline; multiscale: latent upsampler + refine)"))
