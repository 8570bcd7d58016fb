"""Wan through diffusers: the generator (Wan 2.1, and Wan 2.2's expert split as a two-stage cascade) and its FLOPs.

What equals diffusers' ``WanPipeline`` and what is fvbench's own:

* Text: UMT5 with the attention mask, embeddings zeroed past the prompt's length, the negative prompt "" encoded
  for the unconditional branch (``uncond: empty``), prompts cleaned as the pipeline cleans them. Same as diffusers.
* One stage (Wan 2.1): ``nfe`` steps of the scheduler's grid (``set_timesteps(nfe)``), conditional then
  unconditional transformer call per step, ``uncond + g * (cond - uncond)``, the latents de-normalised with the VAE's
  ``latents_mean``/``latents_std`` and decoded. Same as diffusers.
* Expert split (Wan 2.2 A14B), ``schedule: shared``: ONE grid of ``grid_steps`` (diffusers' ``num_inference_steps``);
  the high-noise expert takes the steps whose timestep is >= ``boundary_ratio * num_train_timesteps`` (its ``nfe``
  must be that count, checked when it runs), the low-noise expert the rest, continuing the same multistep scheduler
  (UniPC's history crosses the boundary). Same as diffusers (latents and frames within 1e-5 in fp32, tested). Not
  sweepable: moving stage 2's steps would change the grid stage 1 ran on.
* Expert split, ``schedule: split`` (the default; fvbench's own variant, for NFE sweeps): stage 1 runs its own
  ``nfe``-step grid from sigma 1 down to the boundary sigma (``boundary_ratio`` in shifted-sigma space, where
  diffusers' switch happens), stage 2 its own ``nfe``-step grid from the boundary down to 0 with a fresh scheduler
  (first-order start, no history carried). Both grids are uniform in unshifted sigma as diffusers' grid is, then
  shifted by ``flow_shift``. Stage 1's output depends on nothing of stage 2, so one high-noise prefix is computed once
  and reused bitwise by every stage-2 variant. It is NOT diffusers' trajectory for any (k, m): the boundary is a grid
  point here and the multistep history restarts at it.

The high-noise stage is not decoded by default (``decode: false``; diffusers never decodes the boundary latents,
which are still mostly noise): its video has zero frames, its ``vae_decode`` seconds and FLOPs are 0. ``decode: true``
decodes the partially denoised latents as a preview and pays (and reports) the VAE decode.
"""

from __future__ import annotations

import copy
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fvbench.compute.timing import ComponentTimer, PeakMemory
from fvbench.errors import FvbenchError
from fvbench.generation.denoiser import GuidedCall, TextConditioning
from fvbench.generation.generator import Generator, StageOutput, stage_seed, to_pixels, to_uint8
from fvbench.generation.noise import NoiseSource, SeededNoise
from fvbench.generation.presets import Preset, StageConfig
from fvbench.generation.samplers.scheduler import sample_scheduler


# -- component loaders (called through the plug-in's component types) --------------------------------------------
def load_scheduler(path: Path, dtype: torch.dtype):
    from diffusers import UniPCMultistepScheduler

    return UniPCMultistepScheduler.from_pretrained(path, local_files_only=True)


# -- grids ---------------------------------------------------------------------------------------------------------
def _unshift(sigma: float, shift: float) -> float:
    """Inverse of the flow shift ``s * u / (1 + (s - 1) * u)``: the unshifted sigma whose shifted value is ``sigma``."""
    return sigma / (shift - (shift - 1.0) * sigma)


def set_range(scheduler, steps: int, sigma_hi: float, sigma_lo: float) -> None:
    """Give ``scheduler`` ``steps`` steps from ``sigma_hi`` down to ``sigma_lo`` (shifted sigmas), uniform in unshifted
    sigma as diffusers' own grid is (``linspace(1, 1/T, n + 1)[:-1]``, then shifted, then a final 0).

    ``sigma_hi = 1, sigma_lo = 0`` gives exactly ``set_timesteps(steps)``. A range that stops at ``sigma_lo > 0`` (the
    expert boundary) ends its last step at ``sigma_lo`` instead of 0.
    """
    cfg = scheduler.config
    shift = float(cfg.flow_shift)
    u_hi = 1.0 if sigma_hi >= 1.0 else _unshift(sigma_hi, shift)
    u_lo = 1.0 / cfg.num_train_timesteps if sigma_lo <= 0.0 else _unshift(sigma_lo, shift)
    scheduler.set_timesteps(sigmas=np.linspace(u_hi, u_lo, steps + 1)[:-1])
    if sigma_lo > 0.0:
        scheduler.sigmas[-1] = sigma_lo
    scheduler.set_begin_index(0)


def boundary_steps(scheduler, ratio: float) -> int:
    """How many of the scheduler's timesteps diffusers gives the high-noise expert: those >= ratio * T."""
    return int((scheduler.timesteps >= ratio * scheduler.config.num_train_timesteps).sum())


def decodes(preset: Preset, index: int, stage: StageConfig | None = None) -> bool:
    """Whether a stage decodes its latents: option ``decode``, by default only the last stage."""
    stage = stage or preset.stages[index]
    return bool(stage.options.get("decode", index == len(preset.stages) - 1))


# -- the generator --------------------------------------------------------------------------------------------------
class WanGenerator(Generator):
    """``WanPipeline`` as fvbench stages: Wan 2.1 in one stage, Wan 2.2's two experts as a two-stage cascade.

    Latents keep diffusers' layout (1, C, latent frames, h, w). ``StageOutput.state`` of a stage holds what the next
    expert continues from: the sigma it stopped at and (``schedule: shared``) its scheduler, deep-copied by the reader.
    """

    @torch.no_grad()
    def _embed(self, text: str) -> torch.Tensor:
        from diffusers.pipelines.wan.pipeline_wan import prompt_clean

        tok = self.components.tokenizer([prompt_clean(text)], padding="max_length",
                                        max_length=self.preset.max_text_length, truncation=True,
                                        add_special_tokens=True, return_attention_mask=True, return_tensors="pt")
        ids, mask = tok.input_ids.to(self.device), tok.attention_mask.to(self.device)
        emb = self.components.text_encoder(ids, mask).last_hidden_state.float()
        length = int(mask.gt(0).sum())
        emb[:, length:] = 0  # diffusers keeps the prompt's tokens and zero-pads the rest
        return emb

    def encode_text(self, prompt: str) -> tuple[TextConditioning, float]:
        """Prompt embeddings and, when any stage guides, the negative prompt's ("" as diffusers' default)."""
        timer = ComponentTimer(self.device)
        with timer.time("text_encode"):
            cond = self._embed(prompt)
            guided = any(s.cfg > 1.0 for s in self.preset.stages)
            if not guided:
                uncond = cond
            elif self.preset.uncond == "empty":
                uncond = self._embed("")
            else:
                uncond = torch.zeros_like(cond)
        return TextConditioning(cond, uncond), timer.seconds["text_encode"]

    def _shape(self, stage: StageConfig) -> tuple[int, int, int, int, int]:
        transformer = self.components.transformers[stage.transformer]
        vf = self.preset.vae_spatial_factor
        return (1, transformer.config.in_channels, self.preset.latent_frames, stage.height // vf, stage.width // vf)

    def _scheduler(self, stage: StageConfig):
        base = self.components.modules["scheduler"]
        extra = {"flow_shift": float(stage.options["flow_shift"])} if "flow_shift" in stage.options else {}
        return type(base).from_config(base.config, **extra)

    def _plan(self, index: int, stage: StageConfig, previous: StageOutput | None):
        """The stage's scheduler, ready to step, and its (start, stop) slice of the scheduler's timesteps."""
        first = self.preset.stages[0]
        schedule = first.options.get("schedule", "split")
        ratio = first.options.get("boundary_ratio")
        if index == 0:
            scheduler = self._scheduler(stage)
            if ratio is None:  # Wan 2.1: the whole grid, as WanPipeline sets it
                scheduler.set_timesteps(stage.nfe)
                scheduler.set_begin_index(0)
                return scheduler, 0, stage.nfe
            if schedule == "shared":  # diffusers' one grid: this expert's steps are those above the boundary
                scheduler.set_timesteps(int(stage.options["grid_steps"]))
                scheduler.set_begin_index(0)
                k = boundary_steps(scheduler, float(ratio))
                if k != stage.nfe:
                    raise FvbenchError(f"stage {stage.name!r}: diffusers' boundary {ratio} on a "
                                       f"{stage.options['grid_steps']}-step grid gives the high-noise expert {k} "
                                       f"steps, not nfe {stage.nfe}")
                return scheduler, 0, k
            set_range(scheduler, stage.nfe, 1.0, float(ratio))
            return scheduler, 0, stage.nfe
        if previous is None or not isinstance(previous.state, dict):
            raise FvbenchError(f"stage {stage.name!r} continues the previous expert's latents, but there are none")
        if schedule == "shared":
            scheduler = copy.deepcopy(previous.state["scheduler"])  # the cached output feeds other variants too
            start = int(previous.state["step"])
            return scheduler, start, start + stage.nfe
        scheduler = self._scheduler(stage)
        set_range(scheduler, stage.nfe, float(previous.state["sigma"]), 0.0)
        return scheduler, 0, stage.nfe

    @torch.no_grad()
    def run_stage(self, index: int, text: TextConditioning, seed: int, previous: StageOutput | None = None,
                  stage: StageConfig | None = None, init: Any = None,
                  noise: NoiseSource | None = None) -> StageOutput:
        """Run one stage: stage 1 from seeded noise, a later expert from the previous stage's latents."""
        stage = stage or self.preset.stages[index]
        if init is not None:
            raise ValueError("the wan pipeline takes no prepared init")
        self._check_stage(stage)
        transformer = self.components.transformers[stage.transformer]
        timer = ComponentTimer(self.device)
        steps: list[tuple[float, float]] = []
        with PeakMemory(self.device) as mem:
            scheduler, start, stop = self._plan(index, stage, previous)
            if index == 0:
                noise = noise or SeededNoise(stage_seed(seed, index))
                latents = noise.randn(self._shape(stage)).to(self.device)
            else:
                latents = previous.latents.to(self.device)
            dtype = next(transformer.parameters()).dtype
            call = GuidedCall(transformer, {"encoder_hidden_states": text.cond.to(dtype), "return_dict": False},
                              {"encoder_hidden_states": text.uncond.to(dtype), "return_dict": False}
                              if stage.cfg > 1.0 else None, batched=False)
            hook = self._step_hook(index)
            with timer.time("denoise"):
                latents = sample_scheduler(lambda x, t, g: call(x.to(dtype), t, g), latents, scheduler, stage.cfg,
                                           start=start, stop=stop, trace=steps,
                                           on_step=None if hook is None else (lambda i, x: hook(i - start, x)))
            sigma_end = float(scheduler.sigmas[stop])
            pixels = None
            if decodes(self.preset, index, stage):
                with timer.time("vae_decode"):
                    decoded = self._decode(latents)
                    video = to_uint8(decoded)
                    pixels = to_pixels(decoded) if self._keeps_pixels(index) else None
            else:  # not decoded: no video, and no decode cost
                timer.seconds["vae_decode"] = 0.0
                video = torch.zeros((0, stage.height, stage.width, 3), dtype=torch.uint8)
        shared = self.preset.stages[0].options.get("schedule", "split") == "shared"
        state = {"sigma": sigma_end, "step": stop, "scheduler": scheduler if shared else None}
        return StageOutput(stage.name, latents.cpu(), video, dict(timer.seconds), call.nfe, call.rows,
                           mem.bytes, mem.kind, mem.scope, pixels, steps, state)

    def _decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents -> VAE output (1, 3, F, H, W) in [-1, 1], de-normalised exactly as WanPipeline does."""
        vae = self.components.vae
        z = latents.to(self.device, self._vae_dtype())
        mean = torch.tensor(vae.config.latents_mean).view(1, vae.config.z_dim, 1, 1, 1).to(z.device, z.dtype)
        inv_std = 1.0 / torch.tensor(vae.config.latents_std).view(1, vae.config.z_dim, 1, 1, 1).to(z.device, z.dtype)
        return vae.decode(z / inv_std + mean, return_dict=False)[0]


# -- FLOPs -----------------------------------------------------------------------------------------------------------
def _flops_module():
    from fvbench.compute import flops

    return flops


@lru_cache(maxsize=64)
def _transformer_flops(type_name: str, key: str, latent_frames: int, h: int, w: int, text_len: int) -> tuple[int, int]:
    fl = _flops_module()
    model = fl.meta_module(type_name, key)
    meta = torch.device("meta")
    cfg = model.config
    x = torch.empty(1, cfg.in_channels, latent_frames, h, w, device=meta)
    enc = torch.empty(1, text_len, cfg.text_dim, device=meta)
    t = torch.zeros(1, device=meta)
    return fl.count_flops(lambda: model(hidden_states=x, timestep=t, encoder_hidden_states=enc, return_dict=False))


@lru_cache(maxsize=64)
def _params(type_name: str, key: str) -> int:
    return sum(q.numel() for q in _flops_module().meta_module(type_name, key).parameters())


@lru_cache(maxsize=64)
def _vae_decode_flops(key: str, latent_frames: int, h: int, w: int) -> int:
    """One AutoencoderKLWan decode of a whole video, counted directly on meta (its mid-block attention included)."""
    fl = _flops_module()
    vae = fl.meta_module("wan-vae", key)
    z = torch.empty(1, vae.config.z_dim, latent_frames, h, w, device=torch.device("meta"))
    return fl.count_flops(lambda: vae.decode(z, return_dict=False))[0]


@lru_cache(maxsize=64)
def _text_flops(type_name: str, key: str, length: int) -> int:
    fl = _flops_module()
    model = fl.meta_module(type_name, key)
    ids = torch.zeros(1, length, dtype=torch.long, device="meta")
    return fl.count_flops(lambda: model(input_ids=ids))[0]  # no mask: the same matmuls (a mask on meta cannot be read)


def preset_flops(preset: Preset) -> dict[str, Any]:
    """FLOPs of one video through a Wan preset, as fvbench runs it.

    Text: one UMT5 encode of ``max_text_length`` tokens, two when a stage guides with ``uncond: empty`` (the negative
    prompt). Each stage:
    ``nfe`` steps x (2 transformer calls at batch 1 with CFG, else 1) at the native latent grid, with all
    ``max_text_length`` text tokens in cross-attention (Wan zero-pads, it does not mask); the VAE decode where the
    stage decodes (the undecoded high-noise expert: 0). No VAE encode, no upsample.
    """
    fl = _flops_module()
    guided = any(s.cfg > 1.0 for s in preset.stages)
    te = preset.components["text_encoder"]
    text = _text_flops(te.type, fl.config_key(te.config), preset.max_text_length) * (2 if guided and preset.uncond == "empty"
                                                                                 else 1)
    vf = preset.vae_spatial_factor
    stages: dict[str, dict[str, int]] = {}
    for i, s in enumerate(preset.stages):
        if s.pipeline not in ("", "wan"):
            continue  # a cross-family cascade's other stage: its own pipeline counts it
        spec = preset.components[s.transformer]
        fwd, attn = _transformer_flops(spec.type, fl.config_key(spec.config), preset.latent_frames, s.height // vf,
                                       s.width // vf, preset.max_text_length)
        calls = 2 if s.cfg > 1.0 else 1
        vae = preset.components["vae"]
        dec = (_vae_decode_flops(fl.config_key(vae.config), preset.latent_frames, s.height // vf, s.width // vf)
               if decodes(preset, i) else 0)
        out = {"denoise": s.nfe * calls * fwd, "denoise_attention": s.nfe * calls * attn, "vae_encode": 0,
               "upsample": 0, "vae_decode": dec}
        out["total"] = out["denoise"] + out["vae_decode"]
        # what `fvbench flops` prints beside the totals: one transformer call, how many, the transformer's size
        out.update(forward=fwd, calls=s.nfe * calls, params=_params(spec.type, fl.config_key(spec.config)))
        stages[s.name] = out
    return {"text_encode": text, "stages": stages, "total": text + sum(s["total"] for s in stages.values())}
