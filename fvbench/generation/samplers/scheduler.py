"""The denoising loop of diffusers' video pipelines, shared by the model families: a diffusers scheduler drives it.

Each family's pipeline (Wan, LTX-Video, HunyuanVideo, Mochi) runs the same loop: for each of the scheduler's
timesteps, a guided model evaluation, then ``scheduler.step``. What differs (the scheduler and its timesteps or sigmas,
the model call, the guidance) is passed in; the loop is written once. A stage may run a slice of the timesteps
(``start``/``stop``): an expert split (Wan 2.2) continues one scheduler's trajectory across two stages.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def sample_scheduler(model: Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor], latents: torch.Tensor,
                     scheduler, guidance: float | Callable[[int, torch.Tensor], float], *, start: int = 0,
                     stop: int | None = None, generator: torch.Generator | None = None,
                     model_timestep: Callable[[torch.Tensor], torch.Tensor] | None = None,
                     trace: list | None = None,
                     on_step: Callable[[int, torch.Tensor], None] | None = None) -> torch.Tensor:
    """Run ``scheduler.timesteps[start:stop]`` (set beforehand with ``set_timesteps``) from ``latents``.

    ``model(x, t, guidance)`` is the guided prediction (e.g. a :class:`~fvbench.generation.denoiser.GuidedCall`);
    ``guidance`` a constant or ``f(step index, t)``; ``model_timestep(t)`` maps the scheduler's timestep to what the
    model is given (default: itself). ``trace`` receives one ``(model timestep, guidance)`` per call; ``on_step(i, x)``
    sees the latents after step i. The latents keep their dtype, as diffusers' pipelines do.
    """
    timesteps = scheduler.timesteps
    stop = len(timesteps) if stop is None else stop
    dtype = latents.dtype
    for i in range(start, stop):
        t = timesteps[i]
        g = guidance(i, t) if callable(guidance) else guidance
        mt = model_timestep(t) if model_timestep is not None else t
        if trace is not None:
            trace.append((float(mt), float(g)))
        out = model(scheduler.scale_model_input(latents, t) if hasattr(scheduler, "scale_model_input") else latents,
                    mt, g)
        extra = {} if generator is None else {"generator": generator}  # UniPC's step takes no generator
        latents = scheduler.step(out, t, latents, return_dict=False, **extra)[0].to(dtype)
        if on_step is not None:
            on_step(i, latents)
    return latents
