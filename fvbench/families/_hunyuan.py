"""HunyuanVideo as diffusers 0.42's HunyuanVideoPipeline runs it: generator, component builders, FLOP rule.

What differs from CogVideoX: two text encoders (Llama on a prompt template, cropped after ``crop_start`` tokens, its
third-to-last hidden state; CLIP's pooled output), latents laid out (B, C, F, H, W), guidance *embedded* in the
transformer (``guidance_scale`` x 1000 as an input, one call per step), true CFG only when asked for (``cfg`` > 1:
a second call on the empty prompt, conditional first), a FlowMatchEulerDiscreteScheduler on sigmas
``linspace(1, 0, steps + 1)[:-1]`` shifted by its ``shift``. The loop is the shared one
(:func:`~fvbench.generation.samplers.scheduler.sample_scheduler`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from fvbench.compute.timing import ComponentTimer
from fvbench.errors import FvbenchError
from fvbench.families._hf_family import (FlowMatchGenerator, count_module, flops_result, meta, row,
                                         vae_decode_flops)
from fvbench.generation.denoiser import GuidedCall
from fvbench.generation.presets import Preset, StageConfig

# The stage options of pipeline 'hunyuan' and their defaults (HunyuanVideoPipeline.__call__'s).
DEFAULTS = {"guidance_scale": 6.0, "clip_max_length": 77, "hidden_layers_to_skip": 2}


def opt(stage: StageConfig, key: str) -> Any:
    """A stage option, or its default; the prompt template has none (the preset must say it)."""
    if key in stage.options:
        return stage.options[key]
    if key in DEFAULTS:
        return DEFAULTS[key]
    raise FvbenchError(f"stage {stage.name!r}: pipeline 'hunyuan' needs option {key!r}")


@dataclass
class HunyuanPrompt:
    """One prompt through both encoders: Llama embeddings (1, L, D) and mask (1, L), CLIP pooled (1, D2)."""

    embeds: torch.Tensor
    mask: torch.Tensor
    pooled: torch.Tensor


@dataclass
class HunyuanText:
    """The prompt's encoding, and the empty prompt's when a stage runs true CFG (else None)."""

    cond: HunyuanPrompt
    uncond: HunyuanPrompt | None


class HunyuanGenerator(FlowMatchGenerator):
    """Runs a ``pipeline: hunyuan`` preset as HunyuanVideoPipeline does (fp32 on CPU: equal to it at 1e-5)."""

    family = "hunyuan"

    # -- text ------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def _encode(self, prompt: str) -> HunyuanPrompt:
        s = self.preset.stages[0]
        mods = self.components.modules
        crop = opt(s, "crop_start")
        tok = mods["tokenizer"]([opt(s, "prompt_template").format(prompt)], padding="max_length", truncation=True,
                                max_length=self.preset.max_text_length + crop, return_tensors="pt")
        ids, mask = tok.input_ids.to(self.device), tok.attention_mask.to(self.device)
        hidden = mods["text_encoder"](input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
        embeds = hidden[-(opt(s, "hidden_layers_to_skip") + 1)]
        if crop > 0:
            embeds, mask = embeds[:, crop:], mask[:, crop:]
        clip = mods["tokenizer_2"]([prompt], padding="max_length", max_length=opt(s, "clip_max_length"),
                                   truncation=True, return_tensors="pt")
        pooled = mods["text_encoder_2"](clip.input_ids.to(self.device), output_hidden_states=False).pooler_output
        return HunyuanPrompt(embeds, mask, pooled)

    def encode_text(self, prompt: str) -> tuple[HunyuanText, float]:
        """Both encoders on the prompt (and on '' when a stage runs true CFG); the seconds it took."""
        timer = ComponentTimer(self.device)
        with timer.time("text_encode"):
            cond = self._encode(prompt)
            uncond = self._encode("") if any(s.cfg > 1.0 for s in self.preset.stages) else None
        return HunyuanText(cond, uncond), timer.seconds["text_encode"]

    # -- stages ----------------------------------------------------------------------------------------------
    def _sigmas(self, stage: StageConfig) -> np.ndarray:
        return np.linspace(1.0, 0.0, stage.nfe + 1)[:-1]

    def _guided_call(self, stage: StageConfig, text: HunyuanText) -> GuidedCall:
        """The transformer with embedded guidance (x 1000) in every call; true CFG (cfg > 1) as a second call on the
        empty prompt, the conditional one first."""
        if stage.cfg > 1.0 and text.uncond is None:
            raise FvbenchError(f"stage {stage.name!r} runs true CFG, but the empty prompt was not encoded")
        transformer = self.components.transformers[stage.transformer]
        dtype = self._model_dtype(stage)
        embedded = torch.tensor([float(opt(stage, "guidance_scale"))], dtype=dtype, device=self.device) * 1000.0

        def branch(p: HunyuanPrompt) -> dict[str, torch.Tensor]:
            return {"encoder_hidden_states": p.embeds.to(dtype), "encoder_attention_mask": p.mask.to(dtype),
                    "pooled_projections": p.pooled.to(dtype)}

        def forward(hidden_states: torch.Tensor, timestep: torch.Tensor, **kwargs: Any) -> torch.Tensor:
            return transformer(hidden_states=hidden_states.to(dtype), timestep=timestep.to(hidden_states.dtype),
                               guidance=embedded.expand(hidden_states.shape[0]), return_dict=False, **kwargs)[0]

        return GuidedCall(forward, branch(text.cond), branch(text.uncond) if stage.cfg > 1.0 else None, batched=False)


# -- FLOPs ---------------------------------------------------------------------------------------------------------
def _transformer(module, frames: int, h: int, w: int, text_len: int):
    cfg = module.config
    return module(hidden_states=meta(1, cfg.in_channels, frames, h, w), timestep=meta(1),
                  encoder_hidden_states=meta(1, text_len, cfg.text_embed_dim),
                  encoder_attention_mask=meta(1, text_len), pooled_projections=meta(1, cfg.pooled_projection_dim),
                  guidance=meta(1), return_dict=False)


def preset_flops(preset: Preset) -> dict[str, Any]:
    """FLOPs of one video, counted on the meta device: Llama (template + prompt tokens) and CLIP (77 tokens) once, or
    twice with true CFG; NFE transformer calls at batch 1 (two per step with true CFG); the VAE decode as the
    pipeline runs it (diffusers' frame-wise decode with its mid-block attention; tiled if ``vae_tiling``)."""
    comps = preset.components
    s0 = preset.stages[0]
    llama_len = preset.max_text_length + opt(s0, "crop_start")
    clip_len = opt(s0, "clip_max_length")
    encodes = 2 if any(s.cfg > 1.0 for s in preset.stages) else 1
    # no attention mask on meta (transformers would read its values): the attention matmuls are full-size either way
    llama = count_module(comps["text_encoder"].type, comps["text_encoder"].config,
                         lambda m: m(input_ids=meta(1, llama_len, dtype=torch.long)))
    clip = count_module(comps["text_encoder_2"].type, comps["text_encoder_2"].config,
                        lambda m: m(meta(1, clip_len, dtype=torch.long)))
    rows = [row("-", "text_encoder (Llama)", llama[2], llama_len, llama[0], encodes),
            row("-", "text_encoder_2 (CLIP)", clip[2], clip_len, clip[0], encodes)]
    text = (llama[0] + clip[0]) * encodes
    vf, frames = preset.vae_spatial_factor, preset.latent_frames
    parts: dict[str, dict[str, int]] = {}
    for s in preset.stages:
        spec = comps[s.transformer]
        h, w = s.height // vf, s.width // vf
        p = preset.patch_size(s)
        fl, attn, params = count_module(spec.type, spec.config, lambda m: _transformer(m, frames, h, w,
                                                                                      preset.max_text_length))
        calls = s.nfe * (2 if s.cfg > 1.0 else 1)
        tokens = frames * (h // p) * (w // p) + preset.max_text_length
        rows.append(row(f"{s.name} {s.height}x{s.width}x{preset.frames}f", f"transformer ({s.transformer})", params,
                        tokens, fl, calls, attn))
        dec = vae_decode_flops(preset, s.height, s.width)
        rows.append(row(s.name, "vae decode" + (" (tiled)" if preset.vae_tiling else ""), dec[2], None, dec[0], 1))
        parts[s.name] = {"denoise": fl * calls, "denoise_attention": attn * calls, "vae_decode": dec[0]}
    return flops_result(preset, text, parts, rows)
