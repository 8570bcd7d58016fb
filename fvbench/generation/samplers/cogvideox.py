"""CogVideoX-style sampling: v-prediction on a zero-SNR DDPM schedule with diffusers' DDIM or DPM-Solver++(2M) SDE.

The loop is the one diffusers' CogVideoXPipeline runs, with guidance constant or CogVideoX's dynamic schedule;
the scheduler classes are diffusers' own (``CogVideoXDDIMScheduler``, ``CogVideoXDPMScheduler``).
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers import CogVideoXDDIMScheduler, CogVideoXDPMScheduler

from fvbench.generation.denoiser import Denoiser
from fvbench.generation.schedules import dynamic_cfg_scale

# diffusers' scheduler_config.json of THUDM/CogVideoX-5b (snr_shift_scale 1.0; the 2B ships 3.0).
COGVIDEOX_SCHEDULER_CONFIG: dict[str, Any] = {
    "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "clip_sample": False,
    "num_train_timesteps": 1000, "prediction_type": "v_prediction", "rescale_betas_zero_snr": True,
    "sample_max_value": 1.0, "set_alpha_to_one": True, "snr_shift_scale": 1.0, "steps_offset": 0,
    "timestep_spacing": "trailing",
}


def make_scheduler(solver: str, snr_shift_scale: float = 1.0):
    """A fresh diffusers scheduler for ``solver`` ('ddim' or 'dpm++2m')."""
    cfg = {**COGVIDEOX_SCHEDULER_CONFIG, "snr_shift_scale": snr_shift_scale}
    if solver == "ddim":
        return CogVideoXDDIMScheduler(**cfg)
    if solver == "dpm++2m":
        return CogVideoXDPMScheduler(**cfg)
    raise ValueError(f"not a CogVideoX solver: {solver!r}")


def sample_cogvideox(denoiser: Denoiser, noise: torch.Tensor, solver: str, nfe: int, cfg: float,
                     cfg_schedule: str = "constant", snr_shift_scale: float = 1.0,
                     generator: torch.Generator | None = None, trace: list | None = None) -> torch.Tensor:
    """Denoise ``noise`` (B, F, C, H, W) in ``nfe`` model evaluations; returns clean latents.

    ``trace``, if given, receives one ``(timestep, guidance)`` per model call.
    """
    scheduler = make_scheduler(solver, snr_shift_scale)
    scheduler.set_timesteps(nfe, device=noise.device)
    timesteps = scheduler.timesteps
    latents = noise * scheduler.init_noise_sigma
    old_pred_original_sample = None
    for i, t in enumerate(timesteps):
        guidance = dynamic_cfg_scale(cfg, float(t), nfe) if cfg_schedule == "dynamic" else cfg
        if trace is not None:
            trace.append((float(t), guidance))
        model_input = scheduler.scale_model_input(latents, t)
        v = denoiser(model_input, t, guidance)
        if solver == "ddim":
            latents = scheduler.step(v, t, latents, generator=generator, return_dict=False)[0]
        else:
            latents, old_pred_original_sample = scheduler.step(
                v, old_pred_original_sample, t, timesteps[i - 1] if i > 0 else None, latents,
                generator=generator, return_dict=False,
            )
        latents = latents.to(noise.dtype)
    return latents
