"""FlashVideo's cross-resolution flow (stage II), exactly as arXiv 2502.05179 and its code define it.

z0 = sqrt(abar_k) * z_LR + sqrt(1 - abar_k) * eps   (latent degradation at DDPM step k, default 675)
x_t = (1 - t) * z0 + t * z_HR, velocity target z_HR - z0, integrated by Euler from t=0 to t=1 over the
shifted grid t' = 1 - s(1-t) / (1 + (s-1)(1-t)); the model sees timestep 1000 * (1 - t').
"""

from __future__ import annotations

import torch

from fvbench.generation.denoiser import Denoiser
from fvbench.generation.schedules import degradation_coefficients, shifted_time_grid


def degrade(latents: torch.Tensor, noise_step: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Partly re-noise the upsampled stage-I latents: sqrt(abar) * z + sqrt(1 - abar) * eps."""
    a, b = degradation_coefficients(noise_step)
    eps = torch.randn(latents.shape, generator=generator, dtype=latents.dtype, device=latents.device)
    return a * latents + b * eps


def flow_euler_step(x: torch.Tensor, velocity: torch.Tensor, t: float, t_next: float) -> torch.Tensor:
    """One Euler step of dx/dt = v: x + (t_next - t) * v."""
    return x + (t_next - t) * velocity


def sample_flow(denoiser: Denoiser, z0: torch.Tensor, nfe: int, cfg: float, shift: float = 2.5) -> torch.Tensor:
    """Integrate the flow from ``z0`` (t=0) to t=1 in ``nfe`` model evaluations with constant guidance."""
    grid = shifted_time_grid(nfe, shift).tolist()
    x = z0
    for t, t_next in zip(grid[:-1], grid[1:]):
        v = denoiser(x, torch.tensor(1000.0 * (1.0 - t), dtype=torch.float32), cfg)
        x = flow_euler_step(x, v.to(x.dtype), t, t_next)
    return x
