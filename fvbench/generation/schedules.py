"""Noise schedules and time grids of the FlashVideo paper (arXiv 2502.05179), as plain functions.

These are the numbers a reader can check by hand: sqrt(abar_675) = 0.26396 on the zero-SNR scaled-linear
schedule, and the shifted stage-II grid for S=4 is [0, 0.1176, 0.2857, 0.5455, 1].
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch


@lru_cache(maxsize=8)
def zero_snr_sqrt_alphas_cumprod(
    num_train_timesteps: int = 1000, beta_start: float = 0.00085, beta_end: float = 0.012
) -> torch.Tensor:
    """sqrt(abar_t) of the scaled-linear beta schedule rescaled to zero terminal SNR (Lin et al. 2023), float64.

    betas = linspace(sqrt(beta_start), sqrt(beta_end), T)**2; sqrt(abar) is shifted so its last value is 0 and
    scaled so its first value is unchanged. This is the degradation schedule FlashVideo's stage II uses.
    """
    betas = torch.linspace(beta_start**0.5, beta_end**0.5, num_train_timesteps, dtype=torch.float64) ** 2
    s = torch.cumprod(1.0 - betas, dim=0).sqrt()
    s0, sT = s[0].clone(), s[-1].clone()
    return (s - sT) * s0 / (s0 - sT)


def degradation_coefficients(noise_step: int, num_train_timesteps: int = 1000) -> tuple[float, float]:
    """(sqrt(abar), sqrt(1 - abar)) at DDPM step ``noise_step``: z0 = a * z + b * eps.

    Step 675 gives (0.26396, 0.96453); step 999 gives (0, 1), i.e. pure noise (the vanilla cascade).
    """
    if not 0 <= noise_step < num_train_timesteps:
        raise ValueError(f"noise_step must be in [0, {num_train_timesteps - 1}], got {noise_step}")
    a = float(zero_snr_sqrt_alphas_cumprod(num_train_timesteps)[noise_step])
    return a, math.sqrt(max(0.0, 1.0 - a * a))


def sat_timesteps(num_steps: int, num_train_timesteps: int = 1000) -> list[int]:
    """The DDPM timesteps SAT's (sgm) discretization samples at, from noise to data: 999, 979, 959, 940, ... for 51.

    ``linspace(T - 1, 0, num_steps, endpoint=False)`` truncated to integers (``generate_roughly_equally_spaced_steps``
    of the CogVideoX/FlashVideo SAT code): not diffusers' "trailing" grid, and for 51 steps it ends at 19, not 0.
    """
    if num_steps <= 0 or num_steps > num_train_timesteps:
        raise ValueError(f"num_steps must be in [1, {num_train_timesteps}], got {num_steps}")
    return np.linspace(num_train_timesteps - 1, 0, num_steps, endpoint=False).astype(int).tolist()


def sat_sqrt_alphas_cumprod(timesteps: tuple[int, ...], num_train_timesteps: int = 1000,
                            beta_start: float = 0.00085, beta_end: float = 0.012) -> torch.Tensor:
    """sqrt(abar) at ``timesteps``, rescaled to zero terminal SNR over THAT subset, in SAT's precision (float32).

    SAT's ``ZeroSNRDDPMDiscretization`` takes abar (float64) at the sampled timesteps only, then in float32 shifts
    sqrt(abar) so the subset's noisiest value is 0 and scales it so the subset's cleanest value is unchanged. On the
    51-step subset that is not the full-schedule rescale (the clean end is t=19, not t=0). Same order as ``timesteps``.
    """
    betas = (torch.linspace(beta_start**0.5, beta_end**0.5, num_train_timesteps, dtype=torch.float64) ** 2).numpy()
    abar = np.cumprod(1.0 - betas, axis=0)
    ts = np.asarray(timesteps, dtype=np.int64)
    s = torch.tensor(abar[ts], dtype=torch.float32).sqrt()
    s0, s_t = s[int(np.argmin(ts))].clone(), s[int(np.argmax(ts))].clone()
    return (s - s_t) * (s0 / (s0 - s_t))


def shifted_time_grid(nfe: int, shift: float = 2.5) -> torch.Tensor:
    """Stage-II flow time grid: t = linspace(0, 1, nfe + 1), then t' = 1 - s(1-t) / (1 + (s-1)(1-t)).

    t=0 is the degraded low-resolution latent, t=1 the high-resolution video. A shift above 1 packs the steps
    near t=0, where the flow changes most. Returns float64 of length nfe + 1.
    """
    if nfe <= 0:
        raise ValueError(f"NFE must be positive, got {nfe}")
    t = torch.linspace(0.0, 1.0, nfe + 1, dtype=torch.float64)
    return 1.0 - shift * (1.0 - t) / (1.0 + (shift - 1.0) * (1.0 - t))


def shifted_time_grid_in(nfe: int, shift: float, dtype: torch.dtype) -> torch.Tensor:
    """The stage-II grid as FlashVideo's release computes it: linspace and shift evaluated in ``dtype``.

    ``flow_video.py`` builds the grid with the latent's dtype (bf16 in the release), so every operation rounds:
    for 5 steps in bf16 the model timesteps ``1000 - 1000 t'`` are 1000, 904, 784, 624, 384 (float64: 1000, 909.1,
    789.5, 625, 384.6). Returns ``dtype`` of length nfe + 1.
    """
    if nfe <= 0:
        raise ValueError(f"NFE must be positive, got {nfe}")
    t = torch.linspace(0.0, 1.0, nfe + 1, dtype=dtype)
    return 1 - shift * (1 - t) / (1 + (shift - 1) * (1 - t))


def flow_model_timestep(t: torch.Tensor) -> torch.Tensor:
    """The timestep a stage-II model sees at grid time ``t``: ``1000 - 1000 t``, in ``t``'s dtype (as released)."""
    return 1000 - t * 1000


def dynamic_cfg_scale(scale: float, timestep: float, num_steps: int, exponent: float = 5.0) -> float:
    """CogVideoX dynamic guidance, as both its SAT code and diffusers ship it.

    ``1 + scale * (1 - cos(pi * ((num_steps - timestep) / num_steps) ** exp)) / 2`` where ``timestep`` is the DDPM
    timestep (999 .. 0) fed to the model, not the loop index: that is what SAT's ``DynamicCFG`` receives
    (``step_index = num_steps - timestep``) and what diffusers' CogVideoXPipeline computes. Kept exactly so that
    results are comparable with CogVideoX's own sampler.
    """
    x = (num_steps - float(timestep)) / num_steps
    return 1.0 + scale * (1.0 - math.cos(math.pi * x**exponent)) / 2.0
