"""FlashVideo's cross-resolution flow (stage II), as arXiv 2502.05179 and its released code define it.

z0 = sqrt(abar_k) * z_LR + sqrt(1 - abar_k) * eps   (latent degradation at DDPM step k, default 675)
x_t = (1 - t) * z0 + t * z_HR, velocity target z_HR - z0, integrated by Euler from t=0 to t=1 over the
shifted grid t' = 1 - s(1-t) / (1 + (s-1)(1-t)); the model sees timestep 1000 * (1 - t').
By default the grid is float64; ``grid_dtype`` computes it, the model timestep and the Euler step sizes in that dtype,
as the release does (``flow_video.py`` builds the grid in the latent's dtype, bf16 on its GPUs).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from fvbench.generation.denoiser import Denoiser
from fvbench.generation.noise import NoiseSource
from fvbench.generation.schedules import (
    degradation_coefficients,
    flow_model_timestep,
    shifted_time_grid,
    shifted_time_grid_in,
)


def degrade(latents: torch.Tensor, noise_step: int, generator: torch.Generator | None = None,
            noise: NoiseSource | None = None) -> torch.Tensor:
    """Partly re-noise the upsampled stage-I latents: sqrt(abar) * z + sqrt(1 - abar) * eps.

    eps comes from ``noise`` if given, else from ``generator``.
    """
    a, b = degradation_coefficients(noise_step)
    if noise is not None:
        eps = noise.randn(latents.shape, dtype=latents.dtype).to(latents.device)
    else:
        eps = torch.randn(latents.shape, generator=generator, dtype=latents.dtype, device=latents.device)
    return a * latents + b * eps


def flow_euler_step(x: torch.Tensor, velocity: torch.Tensor, t: float, t_next: float) -> torch.Tensor:
    """One Euler step of dx/dt = v: x + (t_next - t) * v."""
    return x + (t_next - t) * velocity


def sample_flow(denoiser: Denoiser, z0: torch.Tensor, nfe: int, cfg: float, shift: float = 2.5,
                grid_dtype: torch.dtype | None = None, trace: list | None = None,
                on_step: Callable[[int, torch.Tensor], None] | None = None) -> torch.Tensor:
    """Integrate the flow from ``z0`` (t=0) to t=1 in ``nfe`` model evaluations with constant guidance.

    ``grid_dtype`` None: float64 grid (fvbench's own); a dtype: the release's arithmetic in that dtype.
    ``trace``, if given, receives one ``(model timestep, guidance)`` per model call; ``on_step(i, x)`` sees x after
    step i.
    """
    x = z0
    if grid_dtype is None:
        grid = shifted_time_grid(nfe, shift).tolist()
        for k, (t, t_next) in enumerate(zip(grid[:-1], grid[1:])):
            step = torch.tensor(1000.0 * (1.0 - t), dtype=torch.float32)
            if trace is not None:
                trace.append((float(step), cfg))
            v = denoiser(x, step, cfg)
            x = flow_euler_step(x, v.to(x.dtype), t, t_next)
            if on_step is not None:
                on_step(k, x)
        return x
    grid = shifted_time_grid_in(nfe, shift, grid_dtype)
    for k in range(nfe):
        step = flow_model_timestep(grid[k])
        if trace is not None:
            trace.append((float(step), cfg))
        v = denoiser(x, step, cfg)
        x = x + (grid[k + 1] - grid[k]) * v.to(x.dtype)
        if on_step is not None:
            on_step(k, x)
    return x
