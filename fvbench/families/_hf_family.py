"""What the HunyuanVideo and Mochi families share: local loading of transformers models, stage options, the flow
scheduler, decoding, and FLOP bookkeeping on the meta device.

Heavy (torch, diffusers, transformers): imported by the families' generators and FLOP rules, never by a plug-in module.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import torch

from fvbench.compute.flops import count_flops, meta_module
from fvbench.compute.timing import ComponentTimer, PeakMemory
from fvbench.generation.denoiser import GuidedCall
from fvbench.generation.generator import Generator, StageOutput, stage_seed, to_pixels, to_uint8
from fvbench.generation.noise import NoiseSource, SeededNoise
from fvbench.generation.presets import Preset, StageConfig
from fvbench.generation.samplers.scheduler import sample_scheduler


def load_auto_tokenizer(path: Path, dtype: torch.dtype):
    """A tokenizer from its own folder (whatever class its tokenizer_config.json names), local files only."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path, local_files_only=True)


def flow_scheduler(stage: StageConfig):
    """The stage's FlowMatchEulerDiscreteScheduler, configured as the published scheduler_config.json says
    (``options.scheduler``; diffusers' defaults for what it leaves out)."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler(**dict(stage.options.get("scheduler", {})))


def count_module(type_name: str, config: dict[str, Any],
                 call: Callable[[torch.nn.Module], Any]) -> tuple[int, int, int]:
    """(FLOPs, attention FLOPs, parameters) of ``call(module)`` on the meta device, the module built from its config."""
    module = meta_module(type_name, json.dumps(config, sort_keys=True))
    flops, attention = count_flops(lambda: call(module))
    return flops, attention, sum(p.numel() for p in module.parameters())


def meta(*shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """An empty tensor on the meta device (a shape for FLOP counting)."""
    return torch.empty(*shape, device="meta", dtype=dtype)


def flops_result(preset: Preset, text: int, stage_parts: dict[str, dict[str, int]],
                 rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The dict :func:`fvbench.compute.flops.preset_flops` returns, plus ``rows`` (per component: `fvbench flops`)."""
    stages = {}
    for name, parts in stage_parts.items():
        s = {"denoise": 0, "denoise_attention": 0, "vae_encode": 0, "upsample": 0, "vae_decode": 0, **parts}
        s["total"] = s["denoise"] + s["vae_encode"] + s["upsample"] + s["vae_decode"]
        stages[name] = s
    return {"text_encode": text, "stages": stages, "total": text + sum(s["total"] for s in stages.values()),
            "rows": rows}


def row(stage: str, component: str, params: int, tokens: int | None, per_forward: int, forwards: int,
        attention: int | None = None, batch: int = 1) -> dict[str, Any]:
    """One line of `fvbench flops --preset` (the shape the CogVideoX rows have)."""
    return {"stage": stage, "component": component, "params": params, "tokens": tokens, "batch": batch,
            "flops_per_forward": per_forward, "forwards": forwards, "flops_total": per_forward * forwards,
            "attention_share": (attention / per_forward if per_forward else 0.0) if attention is not None else None}



def vae_decode_flops(preset: Preset, height: int, width: int) -> tuple[int, int, int]:
    """(FLOPs, attention FLOPs, params) of decoding one video of ``preset`` at ``height`` x ``width`` as diffusers'
    ``vae.decode`` runs it (its own frame-wise decode, tiles if ``vae_tiling``), counted directly at that size on
    meta: a VAE with mid-block attention (HunyuanVideo's) is quadratic in area, so no scaling from a small size."""
    spec = preset.components["vae"]
    vf = preset.vae_spatial_factor

    def decode(vae):
        vae.use_tiling = preset.vae_tiling
        return vae.decode(meta(1, vae.config.latent_channels, preset.latent_frames, height // vf, width // vf),
                          return_dict=False)

    return count_module(spec.type, spec.config, decode)


class FlowMatchGenerator(Generator):
    """One stage from noise as diffusers' flow-matching video pipelines run it (HunyuanVideo, Mochi): latents
    (B, C, F, H, W), a FlowMatchEulerDiscreteScheduler on the family's sigmas, the shared loop, a VAE decode.

    A family says what differs: :meth:`_guided_call` (text conditioning, guidance), :meth:`_sigmas`, and
    :meth:`_to_vae` (how the final latents become the VAE's input; default: divided by its scaling factor).
    """

    family = ""  # the pipeline's name, for errors

    def _guided_call(self, stage: StageConfig, text: Any) -> GuidedCall:
        raise NotImplementedError

    def _sigmas(self, stage: StageConfig):
        raise NotImplementedError

    def _to_vae(self, latents: torch.Tensor) -> torch.Tensor:
        return latents.to(self._vae_dtype()) / float(self.components.vae.config.scaling_factor)

    def _shape(self, stage: StageConfig) -> tuple[int, int, int, int, int]:
        cfg = self.components.transformers[stage.transformer].config
        vf = self.preset.vae_spatial_factor
        return (1, cfg.in_channels, self.preset.latent_frames, stage.height // vf, stage.width // vf)

    @torch.no_grad()
    def run_stage(self, index: int, text: Any, seed: int, previous: StageOutput | None = None,
                  stage: StageConfig | None = None, init: Any = None, noise: NoiseSource | None = None) -> StageOutput:
        """Denoise from the stage's seeded noise (or ``noise``) over the family's sigmas, then decode."""
        stage = stage or self.preset.stages[index]
        self._check_stage(stage)
        if init is not None:
            raise ValueError(f"pipeline {self.family!r} starts every stage from noise; it takes no prepared init")
        timer = ComponentTimer(self.device)
        latents = (noise or SeededNoise(stage_seed(seed, index))).randn(self._shape(stage)).to(self.device)
        model = self._guided_call(stage, text)
        scheduler = flow_scheduler(stage)
        scheduler.set_timesteps(sigmas=self._sigmas(stage), device=self.device)
        scheduler.set_begin_index(0)  # as the pipelines do: the step index starts at 0, not looked up by timestep
        steps: list[tuple[float, float]] = []
        with PeakMemory(self.device) as mem:
            with timer.time("denoise"):
                latents = sample_scheduler(model, latents, scheduler, stage.cfg, trace=steps,
                                           on_step=self._step_hook(index))
            with timer.time("vae_decode"):
                decoded = self.components.vae.decode(self._to_vae(latents), return_dict=False)[0]
                video = to_uint8(decoded)
                pixels = to_pixels(decoded) if self._keeps_pixels(index) else None
        return StageOutput(stage.name, latents.cpu(), video, dict(timer.seconds), model.nfe, model.rows,
                           mem.bytes, mem.kind, mem.scope, pixels, steps)
