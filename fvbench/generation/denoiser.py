"""The model call shared by every sampler: classifier-free guidance batching and NFE accounting.

One evaluation = one transformer call. With guidance the call carries batch 2 (unconditional, conditional),
as CogVideoX does, so ``nfe`` counts calls and ``rows`` counts the samples the transformer processed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch


@dataclass
class TextConditioning:
    """Prompt embeddings for the conditional and unconditional branches, each (1, L, D)."""

    cond: torch.Tensor
    uncond: torch.Tensor
    # the same prompt with a stage's prompt prefix (FlashVideo's stage II: 'medium motion,' + prompt), by prefix
    prefixed: dict[str, "TextConditioning"] = field(default_factory=dict)

    def for_prefix(self, prefix: str) -> "TextConditioning":
        """The conditioning of ``prefix + prompt`` ('' is the prompt itself); it must have been encoded."""
        if not prefix:
            return self
        if prefix not in self.prefixed:
            raise KeyError(f"prompt prefix {prefix!r} was not encoded")
        return self.prefixed[prefix]


class Denoiser:
    """Calls a CogVideoX-style transformer on (B, F, C, H, W) latents with optional CFG; counts evaluations."""

    def __init__(self, transformer: torch.nn.Module, text: TextConditioning, use_cfg: bool,
                 image_rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
                 timestep_cond: torch.Tensor | None = None):
        self.transformer = transformer
        self.use_cfg = use_cfg
        self.rotary = image_rotary_emb
        self.encoder_hidden_states = torch.cat([text.uncond, text.cond]) if use_cfg else text.cond
        self.timestep_cond = timestep_cond
        self.nfe = 0
        self.rows = 0

    @torch.no_grad()
    def __call__(self, latents: torch.Tensor, timestep: torch.Tensor | float, guidance: float,
                 transform: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
        """Model output at ``timestep``; with CFG, ``uncond + guidance * (cond - uncond)``.

        ``transform(output, input)``, if given, maps each branch's raw output (with its input latents) before guidance
        combines them: SAT's samplers guide the x0 prediction, not the model's v.
        """
        x = torch.cat([latents, latents]) if self.use_cfg else latents
        b = x.shape[0]
        dtype = next(self.transformer.parameters()).dtype
        t = torch.as_tensor(timestep, device=x.device)
        t = t.expand(b) if t.ndim == 0 else t
        kwargs = {}
        if self.timestep_cond is not None:
            kwargs["timestep_cond"] = self.timestep_cond.to(x.device, dtype).expand(b, -1)
        out = self.transformer(
            hidden_states=x.to(dtype), encoder_hidden_states=self.encoder_hidden_states.to(dtype), timestep=t,
            image_rotary_emb=self.rotary, return_dict=False, **kwargs,
        )[0].float()
        if transform is not None:
            out = transform(out, x)
        self.nfe += 1
        self.rows += b
        if not self.use_cfg:
            return out
        uncond, cond = out.chunk(2)
        return uncond + guidance * (cond - uncond)


class GuidedCall:
    """Classifier-free guidance around any transformer call, for the model families' pipelines; counts NFE and rows.

    ``forward(hidden_states=..., timestep=..., **kwargs)`` returns the model output (a tensor, or a tuple whose first
    item is it). ``cond`` and ``uncond`` are the keyword arguments of the conditional and unconditional branches
    (prompt embeddings, attention masks); ``uncond=None`` runs the conditional branch only. ``batched`` runs both
    branches as one call at batch 2, unconditional first (LTX-Video, Mochi, CogVideoX), else as two calls, conditional
    first (Wan). One guided evaluation counts one NFE either way; ``rows`` counts the samples the model processed.
    ``rescale`` is diffusers' guidance rescale (``rescale_noise_cfg``), 0 = off.
    """

    def __init__(self, forward: Callable[..., torch.Tensor], cond: dict, uncond: dict | None = None,
                 batched: bool = True, rescale: float = 0.0):
        self.forward = forward
        self.cond = cond
        self.uncond = uncond
        self.batched = batched
        self.rescale = rescale
        self.nfe = 0
        self.rows = 0
        if uncond is not None and batched:
            self._both = {k: torch.cat([uncond[k], v]) if isinstance(v, torch.Tensor) else v for k, v in cond.items()}

    def _call(self, x: torch.Tensor, t: torch.Tensor, kwargs: dict) -> torch.Tensor:
        t = t.expand(x.shape[0]) if t.ndim == 0 else t
        out = self.forward(hidden_states=x, timestep=t, **kwargs)
        self.rows += x.shape[0]
        return out[0] if isinstance(out, (tuple, list)) else getattr(out, "sample", out)

    @torch.no_grad()
    def __call__(self, latents: torch.Tensor, timestep: torch.Tensor | float, guidance: float) -> torch.Tensor:
        """The (guided) model output at ``timestep``: ``uncond + guidance * (cond - uncond)`` when guided."""
        t = torch.as_tensor(timestep, device=latents.device)
        self.nfe += 1
        if self.uncond is None or guidance <= 1.0:
            return self._call(latents, t, self.cond)
        if self.batched:
            t2 = torch.cat([t.reshape(-1).expand(latents.shape[0])] * 2) if t.ndim else t
            uncond, cond = self._call(torch.cat([latents, latents]), t2, self._both).chunk(2)
        else:
            cond = self._call(latents, t, self.cond)
            uncond = self._call(latents, t, self.uncond)
        guided = uncond + guidance * (cond - uncond)
        if self.rescale > 0:
            from diffusers.guiders.guider_utils import rescale_noise_cfg

            guided = rescale_noise_cfg(guided, cond, self.rescale)
        return guided
