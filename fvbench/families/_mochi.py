"""Mochi 1 as diffusers 0.42's MochiPipeline runs it: generator, FLOP rule.

What differs from CogVideoX: T5 embeddings come with their attention mask (the transformer attends only to the valid
text tokens), latents are laid out (B, C, F, H, W), the sigmas follow Genmo's linear-quadratic schedule (linear to
``threshold_noise`` over the first half of the steps, quadratic after), the scheduler inverts them
(``invert_sigmas``: the transformer is given the inverted timestep), CFG runs batched (unconditional first) and in
float32, and decoding un-normalises the latents with the VAE's per-channel ``latents_mean`` / ``latents_std``. The loop
is the shared one (:func:`~fvbench.generation.samplers.scheduler.sample_scheduler`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from fvbench.compute.timing import ComponentTimer
from fvbench.errors import FvbenchError
from fvbench.families._hf_family import (FlowMatchGenerator, count_module, flops_result, meta, row,
                                         vae_decode_flops)
from fvbench.generation.denoiser import GuidedCall
from fvbench.generation.presets import Preset, StageConfig



def linear_quadratic_sigmas(steps: int, threshold: float = 0.025, linear_steps: int | None = None) -> np.ndarray:
    """Genmo's schedule as sigmas from 1 down: 1 - t where t rises linearly to ``threshold`` over ``linear_steps``
    steps, then along the quadratic that reaches 1 at ``steps`` with a continuous slope.

    One step (fvbench's warm-up, an NFE sweep's low end), where the pipeline divides by zero, is the single sigma 1.
    """
    if steps < 2:
        return np.array([1.0])
    n_lin = steps // 2 if linear_steps is None else linear_steps
    n_quad = steps - n_lin
    t = [i * threshold / n_lin for i in range(n_lin)]
    gap = n_lin - threshold * steps  # how far the linear part, continued, would fall short of 1 at the last step
    a = gap / (n_lin * n_quad ** 2)
    b = threshold / n_lin - 2 * gap / n_quad ** 2
    c = a * n_lin ** 2
    t += [a * i * i + b * i + c for i in range(n_lin, steps)]
    return np.array([1.0 - x for x in t])


@dataclass
class MochiText:
    """T5 embeddings (1, L, D) and boolean masks (1, L) of the prompt and of the empty prompt."""

    cond: torch.Tensor
    cond_mask: torch.Tensor
    uncond: torch.Tensor | None
    uncond_mask: torch.Tensor | None


class MochiGenerator(FlowMatchGenerator):
    """Runs a ``pipeline: mochi`` preset as MochiPipeline does (fp32 on CPU: equal to it at 1e-5)."""

    family = "mochi"

    @torch.no_grad()
    def _t5(self, prompt: str) -> tuple[torch.Tensor, torch.Tensor]:
        tok = self.components.tokenizer([prompt], padding="max_length", max_length=self.preset.max_text_length,
                                        truncation=True, add_special_tokens=True, return_tensors="pt")
        mask = tok.attention_mask.bool().to(self.device)
        return self.components.text_encoder(tok.input_ids.to(self.device), attention_mask=mask)[0], mask

    def encode_text(self, prompt: str) -> tuple[MochiText, float]:
        """T5 on the prompt, and on '' when a stage guides (cfg > 1); the seconds it took."""
        timer = ComponentTimer(self.device)
        with timer.time("text_encode"):
            cond, cond_mask = self._t5(prompt)
            uncond, uncond_mask = self._t5("") if any(s.cfg > 1.0 for s in self.preset.stages) else (None, None)
        return MochiText(cond, cond_mask, uncond, uncond_mask), timer.seconds["text_encode"]

    def _to_vae(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents as the VAE decodes them: x std / scaling + mean per channel (or / scaling without statistics)."""
        cfg = self.components.vae.config
        z = latents.to(self._vae_dtype())
        if getattr(cfg, "latents_mean", None) is None or getattr(cfg, "latents_std", None) is None:
            return z / cfg.scaling_factor
        shape = (1, -1, 1, 1, 1)
        mean = torch.tensor(cfg.latents_mean).view(shape).to(z.device, z.dtype)
        std = torch.tensor(cfg.latents_std).view(shape).to(z.device, z.dtype)
        return z * std / cfg.scaling_factor + mean

    def _sigmas(self, stage: StageConfig) -> np.ndarray:
        return linear_quadratic_sigmas(stage.nfe, stage.options.get("threshold_noise", 0.025),
                                       stage.options.get("linear_steps"))

    def _guided_call(self, stage: StageConfig, text: MochiText) -> GuidedCall:
        """The transformer on the masked T5 embeddings; with CFG one call at batch 2 (the empty prompt first), its
        output in float32 (Mochi guides and steps in float32)."""
        guided = stage.cfg > 1.0
        if guided and text.uncond is None:
            raise FvbenchError(f"stage {stage.name!r} guides, but the empty prompt was not encoded")
        transformer = self.components.transformers[stage.transformer]
        dtype = self._model_dtype(stage)

        def forward(hidden_states: torch.Tensor, timestep: torch.Tensor, **kwargs: Any) -> torch.Tensor:
            return transformer(hidden_states=hidden_states.to(dtype), timestep=timestep.to(hidden_states.dtype),
                               return_dict=False, **kwargs)[0].float()

        cond = {"encoder_hidden_states": text.cond.to(dtype), "encoder_attention_mask": text.cond_mask}
        uncond = ({"encoder_hidden_states": text.uncond.to(dtype), "encoder_attention_mask": text.uncond_mask}
                  if guided else None)
        return GuidedCall(forward, cond, uncond, batched=True)


# -- FLOPs ---------------------------------------------------------------------------------------------------------
class _AllTextValid:
    """Stands in for diffusers' Mochi attention processor while counting on meta, where the valid text tokens cannot
    be looked up (``nonzero`` reads values): the same projections and one attention over video + every text token."""

    def __call__(self, attn, hidden_states, encoder_hidden_states, attention_mask, image_rotary_emb=None):
        n = hidden_states.shape[1]

        def heads(video_proj, text_proj):
            x = torch.cat([video_proj(hidden_states), text_proj(encoder_hidden_states)], dim=1)
            return x.unflatten(2, (attn.heads, -1)).transpose(1, 2)

        q, k = heads(attn.to_q, attn.add_q_proj), heads(attn.to_k, attn.add_k_proj)
        v = heads(attn.to_v, attn.add_v_proj)
        out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).flatten(2, 3)
        video, text = out[:, :n], out[:, n:]
        video = attn.to_out[0](video)
        return video, (attn.to_add_out(text) if hasattr(attn, "to_add_out") else text)


def _rope_angles(freqs: torch.Tensor, pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mochi's RoPE angles (positions x frequencies, float32) without the autocast block meta cannot enter."""
    angles = torch.einsum("nd,dhf->nhf", pos.float(), freqs.float())
    return angles.cos(), angles.sin()


def _transformer(module, frames: int, h: int, w: int, text_len: int, batch: int):
    cfg = module.config
    attns = [m for m in module.modules() if type(m).__name__ == "MochiAttention"]
    saved = [m.processor for m in attns]
    for m in attns:
        m.processor = _AllTextValid()
    module.rope._create_rope = _rope_angles  # on this (meta, counting-only) instance
    try:
        return module(hidden_states=meta(batch, cfg.in_channels, frames, h, w), timestep=meta(batch),
                      encoder_hidden_states=meta(batch, text_len, cfg.text_embed_dim),
                      encoder_attention_mask=meta(batch, text_len, dtype=torch.bool), return_dict=False)
    finally:
        del module.rope._create_rope
        for m, p in zip(attns, saved):
            m.processor = p


def transformer_flops(preset: Preset, stage: StageConfig, batch: int,
                      text_len: int | None = None) -> tuple[int, int, int]:
    """(FLOPs, attention FLOPs, params) of one transformer call at ``batch`` with ``text_len`` valid text tokens
    per row (default: all ``max_text_length``, an upper bound: the real call attends to the prompt's own tokens)."""
    spec = preset.components[stage.transformer]
    vf = preset.vae_spatial_factor
    return count_module(spec.type, spec.config, lambda m: _transformer(
        m, preset.latent_frames, stage.height // vf, stage.width // vf, text_len or preset.max_text_length, batch))


def preset_flops(preset: Preset) -> dict[str, Any]:
    """FLOPs of one video, counted on the meta device: T5 on the prompt (and on '' with CFG), NFE transformer calls
    (batch 2 with CFG) attending to all ``max_text_length`` text tokens (an upper bound: the pipeline drops padding
    tokens, about 1% of the attention at the native size), the VAE decode at full size (its decoder has no
    attention)."""
    comps = preset.components
    L = preset.max_text_length
    encodes = 2 if any(s.cfg > 1.0 for s in preset.stages) else 1
    t5 = count_module(comps["text_encoder"].type, comps["text_encoder"].config,
                      lambda m: m(meta(1, L, dtype=torch.long)))
    rows = [row("-", "text_encoder (T5)", t5[2], L, t5[0], encodes)]
    vf, frames = preset.vae_spatial_factor, preset.latent_frames
    parts: dict[str, dict[str, int]] = {}
    for s in preset.stages:
        batch = 2 if s.cfg > 1.0 else 1
        fl, attn, params = transformer_flops(preset, s, batch)
        p = preset.patch_size(s)
        tokens = frames * (s.height // vf // p) * (s.width // vf // p) + L
        rows.append(row(f"{s.name} {s.height}x{s.width}x{preset.frames}f", f"transformer ({s.transformer})", params,
                        tokens, fl, s.nfe, attn, batch))
        dec = vae_decode_flops(preset, s.height, s.width)
        rows.append(row(s.name, "vae decode" + (" (tiled)" if preset.vae_tiling else ""), dec[2], None, dec[0], 1))
        parts[s.name] = {"denoise": fl * s.nfe, "denoise_attention": attn * s.nfe, "vae_decode": dec[0]}
    return flops_result(preset, t5[0] * encodes, parts, rows)
