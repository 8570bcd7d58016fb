"""LTX-Video's generator and FLOP rule: what diffusers' LTX pipelines do differently from the shared generator.

Differences from CogVideoX, each as diffusers 0.42 runs it (``pipeline_ltx.py``, ``pipeline_ltx_condition.py``,
``pipeline_ltx_latent_upsample.py``): latents are packed into a token sequence (B, F*H*W, C) for the transformer and
kept per channel normalised by the VAE's ``latents_mean``/``latents_std``; text is T5 with an attention mask, the
negative prompt "" encoded like the prompt; guidance batches (uncond, cond) in one call, with optional
``guidance_rescale``; a timestep-conditioned VAE (0.9.1+) decodes at ``decode_timestep`` after mixing in
``decode_noise_scale`` of fresh noise. Diffusers' own helpers (pack/unpack, (de)normalise, shift, timestep grids,
video coordinates, AdaIN, tone mapping) are called, not rewritten; the denoising loop is the shared
:func:`~fvbench.generation.samplers.scheduler.sample_scheduler`.

The multiscale cascade (0.9.7/0.9.8): stage 1 ends with normalised low-resolution latents (its preview is their
decode); a ``latent-upsample`` stage runs the latent upsampler on them (timed and counted as ``upsample``), re-noises to
the sigma where ``denoise_strength`` starts its schedule, and takes the last ``nfe`` steps. Stage 1 is not changed by
stage 2 (the upsampler reads a copy), so one stage-1 output feeds every stage-2 variant.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import FlowMatchEulerDiscreteScheduler
from diffusers.utils import logging as diffusers_logging
from diffusers.pipelines.ltx.modeling_latent_upsampler import LTXLatentUpsamplerModel
from diffusers.pipelines.ltx.pipeline_ltx import LTXPipeline, calculate_shift, retrieve_timesteps
from diffusers.pipelines.ltx.pipeline_ltx_condition import LTXConditionPipeline, linear_quadratic_schedule
from diffusers.pipelines.ltx.pipeline_ltx_latent_upsample import LTXLatentUpsamplePipeline

from fvbench.compute.flops import count_flops, config_key, meta_module, text_encoder_flops
from fvbench.compute.timing import ComponentTimer, PeakMemory
from fvbench.errors import FvbenchError
from fvbench.families.ltx import STAGE_OPTIONS
from fvbench.generation.denoiser import GuidedCall
from fvbench.generation.generator import Generator, StageOutput, stage_seed, to_pixels, to_uint8
from fvbench.generation.noise import NoiseSource, SeededNoise
from fvbench.generation.presets import Preset, StageConfig
from fvbench.generation.samplers.scheduler import sample_scheduler


# -- components ----------------------------------------------------------------------------------------------------
def build_upsampler(config: dict[str, Any]) -> LTXLatentUpsamplerModel:
    return LTXLatentUpsamplerModel(**config)


def load_upsampler(path: Path, dtype: torch.dtype) -> LTXLatentUpsamplerModel:
    model, info = LTXLatentUpsamplerModel.from_pretrained(path, torch_dtype=dtype, local_files_only=True,
                                                          output_loading_info=True)
    if info.get("missing_keys"):  # diffusers would initialise them at random, with only a warning
        missing = sorted(info["missing_keys"])
        raise ValueError(f"{len(missing)} weights of the latent upsampler are not in the folder (e.g. {missing[0]})")
    return model


def build_scheduler(config: dict[str, Any]) -> FlowMatchEulerDiscreteScheduler:
    return FlowMatchEulerDiscreteScheduler(**config)


def load_scheduler(path: Path, dtype: torch.dtype) -> FlowMatchEulerDiscreteScheduler:
    return FlowMatchEulerDiscreteScheduler.from_pretrained(path, local_files_only=True)


# -- schedules -----------------------------------------------------------------------------------------------------
def options(stage: StageConfig) -> dict[str, Any]:
    """The stage's ltx options with diffusers' defaults filled in."""
    return {**STAGE_OPTIONS, **stage.options}


def refine_schedule_steps(nfe: int, strength: float) -> int:
    """The N of diffusers' refine call (``num_inference_steps=N, denoise_strength=strength``) that runs ``nfe`` steps.

    ``LTXConditionPipeline.get_timesteps`` keeps the last ``min(int(N * strength), N)`` of N steps; fvbench sweeps the
    steps actually run, so it takes the smallest N that keeps exactly ``nfe`` (10 for 4 at 0.4, as the docs' example).
    """
    n = max(1, int(nfe / strength) - 1)
    while min(int(n * strength), n) != nfe:
        n += 1
        if n > 100 * nfe + 100:
            raise FvbenchError(f"no schedule length keeps {nfe} steps at denoise_strength {strength}")
    return n


@dataclass
class LtxText:
    """T5 embeddings of the prompt and of the negative prompt (""), with their attention masks.

    ``embeds[masked]``: LTXConditionPipeline passes the attention mask into T5, LTXPipeline does not; the embeddings
    differ, so each solver's kind is encoded (once per prompt) and looked up by ``masked``.
    """

    embeds: dict[bool, torch.Tensor]
    mask: torch.Tensor
    negative_embeds: dict[bool, torch.Tensor]
    negative_mask: torch.Tensor | None


class LtxGenerator(Generator):
    """Runs an ``ltx`` preset: LTXPipeline / LTXConditionPipeline stages, the multiscale refine stage."""

    # -- text --------------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def _t5(self, text: str, kinds: set[bool]) -> tuple[dict[bool, torch.Tensor], torch.Tensor]:
        tok = self.components.tokenizer([text], padding="max_length", max_length=self.preset.max_text_length,
                                        truncation=True, add_special_tokens=True, return_tensors="pt")
        ids, mask = tok.input_ids.to(self.device), tok.attention_mask.bool().to(self.device)
        return {m: self.components.text_encoder(ids, attention_mask=mask if m else None)[0] for m in kinds}, mask

    def encode_text(self, prompt: str) -> tuple[LtxText, float]:
        """The prompt's T5 embeddings and mask, and the negative prompt's when a stage guides, as each stage's
        pipeline encodes them (with or without the mask inside T5)."""
        kinds = {s.solver == "ltx-condition" for s in self.preset.stages}
        timer = ComponentTimer(self.device)
        with timer.time("text_encode"):
            embeds, mask = self._t5(prompt, kinds)
            neg = self._t5("", kinds) if any(s.cfg > 1.0 for s in self.preset.stages) else ({}, None)
        return LtxText(embeds, mask, *neg), timer.seconds["text_encode"]

    # -- geometry ----------------------------------------------------------------------------------------------------
    def _grid(self, stage: StageConfig) -> tuple[int, int, int]:
        f = self.preset.vae_spatial_factor
        return self.preset.latent_frames, stage.height // f, stage.width // f

    def _shape(self, stage: StageConfig) -> tuple[int, int, int, int, int]:
        """Unpacked latent shape (B, C, F, H, W), as diffusers' LTX pipelines draw their noise."""
        channels = self.components.transformers[stage.transformer].config.in_channels
        return (1, channels, *self._grid(stage))

    def _pack(self, x: torch.Tensor, transformer) -> torch.Tensor:
        return LTXPipeline._pack_latents(x, transformer.config.patch_size, transformer.config.patch_size_t)

    def _unpack(self, x: torch.Tensor, transformer, grid: tuple[int, int, int]) -> torch.Tensor:
        p, pt = transformer.config.patch_size, transformer.config.patch_size_t
        return LTXPipeline._unpack_latents(x, grid[0] // pt, grid[1] // p, grid[2] // p, p, pt)

    def _normalize(self, x: torch.Tensor, inverse: bool = False) -> torch.Tensor:
        vae = self.components.vae
        fn = LTXPipeline._denormalize_latents if inverse else LTXPipeline._normalize_latents
        return fn(x, vae.latents_mean, vae.latents_std, vae.config.scaling_factor)

    # -- model -------------------------------------------------------------------------------------------------------
    def _model(self, stage: StageConfig, text: LtxText, grid: tuple[int, int, int]) -> GuidedCall:
        transformer = self.components.transformers[stage.transformer]
        vae = self.components.vae
        dtype = next(transformer.parameters()).dtype
        rate = float(options(stage)["frame_rate"])
        condition = stage.solver == "ltx-condition"
        common: dict[str, Any] = {}
        branch: dict[str, torch.Tensor] = {}
        if condition:  # LTXConditionPipeline: positions as video coordinates, frame axis in seconds
            p, pt = transformer.config.patch_size, transformer.config.patch_size_t
            ids = LTXConditionPipeline._prepare_video_ids(1, *grid, patch_size=p, patch_size_t=pt, device=self.device)
            coords = LTXConditionPipeline._scale_video_ids(ids, vae.spatial_compression_ratio,
                                                           vae.temporal_compression_ratio, 0, self.device).float()
            coords[:, 0] = coords[:, 0] * (1.0 / rate)
            branch["video_coords"] = coords
        else:  # LTXPipeline: the latent grid and its RoPE interpolation scale
            common = {"num_frames": grid[0], "height": grid[1], "width": grid[2],
                      "rope_interpolation_scale": (vae.temporal_compression_ratio / rate, vae.spatial_compression_ratio,
                                                   vae.spatial_compression_ratio)}

        def forward(hidden_states: torch.Tensor, timestep: torch.Tensor, **kwargs) -> torch.Tensor:
            if condition:  # (B, 1) float timesteps, as LTXConditionPipeline passes them
                timestep = timestep.unsqueeze(-1).float()
            return transformer(hidden_states=hidden_states.to(dtype), timestep=timestep, return_dict=False,
                               **common, **kwargs)[0].float()

        cond = {"encoder_hidden_states": text.embeds[condition].to(dtype), "encoder_attention_mask": text.mask, **branch}
        uncond = None
        if stage.cfg > 1.0:
            uncond = {"encoder_hidden_states": text.negative_embeds[condition].to(dtype),
                      "encoder_attention_mask": text.negative_mask, **branch}
        return GuidedCall(forward, cond, uncond, batched=True, rescale=float(options(stage)["guidance_rescale"]))

    def _scheduler(self, stage: StageConfig, grid: tuple[int, int, int]) -> tuple[Any, int]:
        """A fresh scheduler with the stage's timesteps set, and the index of the first step the stage runs."""
        base = self.components.modules["scheduler"]
        sched = type(base).from_config(base.config)
        if stage.solver == "ltx":
            n = stage.nfe
            if n == 1 and sched.config.get("shift_terminal"):
                # one sigma (1.0) cannot be stretched to a terminal value (diffusers divides 0 by 0 and fails):
                # fvbench takes that single step unstretched, from sigma 1 to 0 (the warm-up runs 1 NFE per stage)
                sched = type(base).from_config(base.config, shift_terminal=None)
            sigmas = np.linspace(1.0, 1 / n, n)
            cfg = sched.config
            mu = calculate_shift(grid[0] * grid[1] * grid[2], cfg.get("base_image_seq_len", 256),
                                 cfg.get("max_image_seq_len", 4096), cfg.get("base_shift", 0.5),
                                 cfg.get("max_shift", 1.15))
            retrieve_timesteps(sched, n, self.device, None, sigmas=sigmas, mu=mu)
            return sched, 0
        refine = stage.init == "latent-upsample"
        explicit = options(stage)["timesteps"]
        if explicit is not None:  # the distilled models' list, passed as diffusers' timesteps= (validated: nfe fits)
            n, grid_ts = len(explicit), list(explicit)
        else:
            n = refine_schedule_steps(stage.nfe, float(options(stage)["denoise_strength"])) if refine else stage.nfe
            grid_ts = linear_quadratic_schedule(n) * 1000
        # LTXConditionPipeline passes its grid as timesteps, which diffusers warns about on every call; fvbench runs
        # exactly that call on purpose, so the warning is silenced here
        logger = diffusers_logging.get_logger("diffusers.schedulers.scheduling_flow_match_euler_discrete")
        level = logger.level
        logger.setLevel(diffusers_logging.ERROR)
        try:
            retrieve_timesteps(sched, n, self.device, grid_ts)
        finally:
            logger.setLevel(level)
        return sched, n - stage.nfe

    # -- stages ------------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def upsample_latents(self, stage: StageConfig, latents: torch.Tensor) -> torch.Tensor:
        """LTXLatentUpsamplePipeline with ``latents=`` and ``output_type='latent'``: normalised in, normalised out."""
        opts = options(stage)
        upsampler = self.components.modules[opts["upsampler"]]
        x = self._normalize(latents, inverse=True).to(next(upsampler.parameters()).dtype)
        up = upsampler(x)
        if float(opts["adain_factor"]) > 0.0:
            up = LTXLatentUpsamplePipeline.adain_filter_latent(None, up, x, float(opts["adain_factor"]))
        if float(opts["tone_map_compression_ratio"]) > 0.0:
            up = LTXLatentUpsamplePipeline.tone_map_latents(None, up, float(opts["tone_map_compression_ratio"]))
        return self._normalize(up)

    @torch.no_grad()
    def decode(self, stage: StageConfig, latents: torch.Tensor, noise: NoiseSource, seed: int) -> torch.Tensor:
        """Normalised latents -> VAE output (1, 3, F, H, W) in [-1, 1], as the pipelines decode (``output_type`` not
        latent). A timestep-conditioned VAE decodes at ``decode_timestep`` after mixing in ``decode_noise_scale`` of a
        fresh draw. A VAE that injects noise inside its decoder (0.9.1's) draws it from torch's global generator;
        fvbench seeds that from ``seed`` in a forked RNG so a video stays a function of its seed."""
        vae = self.components.vae
        x = self._normalize(latents, inverse=True)
        timestep = None
        if vae.config.timestep_conditioning:
            opts = options(stage)
            t = float(opts["decode_timestep"])
            scale = t if opts["decode_noise_scale"] is None else float(opts["decode_noise_scale"])
            eps = noise.randn(x.shape, dtype=x.dtype).to(x.device)
            timestep = torch.tensor([t], device=x.device, dtype=x.dtype)
            s = torch.tensor([scale], device=x.device, dtype=x.dtype)[:, None, None, None, None]
            x = (1 - s) * x + s * eps
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return vae.decode(x.to(self._vae_dtype()), timestep, return_dict=False)[0]

    @torch.no_grad()
    def run_stage(self, index: int, text: LtxText, seed: int, previous: StageOutput | None = None,
                  stage: StageConfig | None = None, init: Any = None, noise: NoiseSource | None = None) -> StageOutput:
        """Run stage ``index``: from noise, or (``latent-upsample``) from the previous stage's latents upsampled and
        re-noised; then decode. ``StageOutput.latents`` are the unpacked, normalised latents (B, C, F, H, W)."""
        stage = stage or self.preset.stages[index]
        if init is not None:
            raise ValueError("the ltx pipeline prepares no separate init")
        self._check_stage(stage)
        transformer = self.components.transformers[stage.transformer]
        noise = noise or SeededNoise(stage_seed(seed, index))
        timer = ComponentTimer(self.device)
        grid = self._grid(stage)
        shape = self._shape(stage)
        steps: list[tuple[float, float]] = []
        with PeakMemory(self.device) as mem:
            refined = None
            if stage.init == "latent-upsample":
                if previous is None:
                    raise FvbenchError(f"stage {stage.name!r} upsamples the previous stage's latents, but there is none")
                with timer.time("upsample"):
                    refined = self.upsample_latents(stage, previous.latents.to(self.device))
                if tuple(refined.shape) != shape:
                    raise FvbenchError(f"stage {stage.name!r}: the upsampler gave latents {tuple(refined.shape)}, "
                                       f"the stage needs {shape}")
            model = self._model(stage, text, grid)
            with timer.time("denoise"):
                sched, start = self._scheduler(stage, grid)
                x = noise.randn(shape).to(self.device)
                if refined is not None:  # LTXConditionPipeline.prepare_latents with latents= and a start sigma
                    sigma = sched.sigmas[start:start + 1].to(self.device)
                    x = sigma * x + (1 - sigma) * refined
                packed = self._pack(x, transformer)
                if stage.solver == "ltx-condition":
                    sched = _PerTokenStep(sched)
                packed = sample_scheduler(model, packed, sched, stage.cfg, start=start, trace=steps,
                                          on_step=self._step_hook(index))
                latents = self._unpack(packed, transformer, grid)
            with timer.time("vae_decode"):
                decoded = self.decode(stage, latents, noise, stage_seed(seed, index) + 1)
                video = to_uint8(decoded)
                pixels = to_pixels(decoded) if self._keeps_pixels(index) else None
        return StageOutput(stage.name, latents.cpu(), video, dict(timer.seconds), model.nfe, model.rows,
                           mem.bytes, mem.kind, mem.scope, pixels, steps)


class _PerTokenStep:
    """LTXConditionPipeline's scheduler step: ``step(-prediction, t, x, per_token_timesteps=t)``.

    That pipeline negates the guided prediction and steps by per-token timesteps (all equal without conditioning
    frames); this wrapper lets the shared loop drive it unchanged.
    """

    def __init__(self, scheduler):
        self.scheduler = scheduler
        self.timesteps = scheduler.timesteps

    def step(self, model_output, timestep, sample, generator=None, return_dict=False):
        per_token = timestep.expand(sample.shape[0]).unsqueeze(-1).float()
        return self.scheduler.step(-model_output, timestep, sample, per_token_timesteps=per_token, return_dict=False)


# -- FLOPs ---------------------------------------------------------------------------------------------------------
@lru_cache(maxsize=256)
@torch.no_grad()
def _transformer_count(type_name: str, config_key: str, grid: tuple[int, int, int], text_len: int, batch: int,
                       solver: str) -> tuple[int, int, int]:
    """(FLOPs, attention FLOPs, parameters) of one transformer call on the meta device at the stage's grid."""
    model = meta_module(type_name, config_key)
    cfg = model.config
    meta = torch.device("meta")
    tokens = (grid[0] // cfg.patch_size_t) * (grid[1] // cfg.patch_size) * (grid[2] // cfg.patch_size)
    x = torch.empty(batch, tokens, cfg.in_channels * cfg.patch_size_t * cfg.patch_size ** 2, device=meta)
    enc = torch.empty(batch, text_len, cfg.caption_channels, device=meta)
    mask = torch.ones(batch, text_len, dtype=torch.bool, device=meta)
    if solver == "ltx-condition":
        kwargs: dict[str, Any] = {"timestep": torch.empty(batch, 1, device=meta),
                                  "video_coords": torch.zeros(batch, 3, tokens, device=meta)}
    else:
        kwargs = {"timestep": torch.empty(batch, device=meta), "num_frames": grid[0], "height": grid[1],
                  "width": grid[2], "rope_interpolation_scale": (8 / 25, 32, 32)}
    flops, attn = count_flops(lambda: model(hidden_states=x, encoder_hidden_states=enc, encoder_attention_mask=mask,
                                       return_dict=False, **kwargs))
    return flops, attn, sum(q.numel() for q in model.parameters())


_DECODE_REF = ((2, 2), (4, 4))  # latent sizes the decoder is counted at; its FLOPs are affine in the latent area


@lru_cache(maxsize=256)
@torch.no_grad()
def _decode_count(config_key: str, latent_frames: int, h: int, w: int) -> int:
    vae = meta_module("ltx-vae", config_key)
    z = torch.empty(1, vae.config.latent_channels, latent_frames, h, w, device="meta")
    t = torch.empty(1, device="meta") if vae.config.timestep_conditioning else None
    return count_flops(lambda: vae.decode(z, t))[0]


def decode_flops(config_key: str, latent_frames: int, h: int, w: int) -> int:
    """FLOPs of one VAE decode of (latent_frames, h, w) latents.

    The LTX VAE decoder is convolutional (no attention; depth-to-space upsamplers) plus a timestep embedding whose
    cost does not depend on the size: counted at two small latent areas and extended exactly as an affine function
    of the area (tests/test_family_ltx.py checks it against a direct count at a third size).
    """
    (h1, w1), (h2, w2) = _DECODE_REF
    f1, f2 = _decode_count(config_key, latent_frames, h1, w1), _decode_count(config_key, latent_frames, h2, w2)
    per_area = (f2 - f1) / (h2 * w2 - h1 * w1)
    return int(round(f1 + per_area * (h * w - h1 * w1)))


@lru_cache(maxsize=64)
def upsample_flops(type_name: str, config_key: str, grid: tuple[int, int, int]) -> int:
    """FLOPs of the latent upsampler on the previous stage's latents (counted directly on meta)."""
    model = meta_module(type_name, config_key)
    x = torch.empty(1, model.config.in_channels, *grid, device="meta")
    with torch.no_grad():
        return count_flops(lambda: model(x))[0]


def preset_flops(preset: Preset) -> dict[str, Any]:
    """FLOPs of one video: T5 (prompt, and the negative prompt when a stage guides), then per stage the transformer
    (NFE calls, batch 2 with guidance), the latent upsampler (refine stages) and the VAE decode of the stage's video."""
    guided = any(s.cfg > 1.0 for s in preset.stages)
    text = text_encoder_flops(preset).flops * (2 if guided else 1)
    vae_key = config_key(preset.components["vae"].config)
    f = preset.vae_spatial_factor
    stages: dict[str, dict[str, int]] = {}
    for i, s in enumerate(preset.stages):
        spec = preset.components[s.transformer]
        grid = (preset.latent_frames, s.height // f, s.width // f)
        fwd, attn, _ = _transformer_count(spec.type, config_key(spec.config), grid, preset.max_text_length,
                                          2 if s.cfg > 1.0 else 1, s.solver)
        out = {"denoise": s.nfe * fwd, "denoise_attention": s.nfe * attn, "vae_encode": 0, "upsample": 0}
        if s.init == "latent-upsample":
            up = preset.components[options(s)["upsampler"]]
            prev = preset.stages[i - 1]
            out["upsample"] = upsample_flops(up.type, config_key(up.config),
                                             (preset.latent_frames, prev.height // f, prev.width // f))
        out["vae_decode"] = decode_flops(vae_key, *grid)
        out["total"] = out["denoise"] + out["vae_encode"] + out["upsample"] + out["vae_decode"]
        stages[s.name] = out
    return {"text_encode": text, "stages": stages, "total": text + sum(s["total"] for s in stages.values())}

