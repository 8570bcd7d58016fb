"""Stage I as FlashVideo's release samples it: SAT's DPM-Solver++(2M) SDE on its own timestep subset.

The release (``sgm`` ``VPSDEDPMPP2MSampler`` with ``ZeroSNRDDPMDiscretization`` and ``DynamicCFG``, configured in
``configs/stage1.yaml``) differs from diffusers' ``CogVideoXDPMScheduler`` in ways that change every step:

- N model calls at ``sat_timesteps(N)`` (999, 979, 959, ... 19 for N = 51), with the zero-SNR rescale taken over
  that subset (``sat_sqrt_alphas_cumprod``), in float32;
- the x0 prediction uses sqrt(abar) snapped to the nearest value of the full 1000-step schedule (SAT's
  ``DiscreteDenoiser`` quantizes sigma), while the solver's multipliers use the subset's own values;
- guidance combines the two x0 predictions, scale ``dynamic_cfg_scale(cfg, t, N)`` with t the DDPM timestep;
- one noise draw on the first step, two on every middle step (the release computes a first-order update, discards
  it, and draws again for the second-order one), none on the last step, which returns the x0 prediction.

This module writes that solver from the maths (no code of the release), on fvbench's shared ``Denoiser``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import torch

from fvbench.generation.denoiser import Denoiser
from fvbench.generation.noise import NoiseSource
from fvbench.generation.schedules import dynamic_cfg_scale, sat_sqrt_alphas_cumprod, sat_timesteps


@lru_cache(maxsize=4)
def _full_schedule(num_train_timesteps: int = 1000) -> torch.Tensor:
    return sat_sqrt_alphas_cumprod(tuple(range(num_train_timesteps)), num_train_timesteps)


def quantize_sqrt_alpha(a: torch.Tensor) -> torch.Tensor:
    """The full-schedule sqrt(abar) nearest to ``a`` (first on ties), as SAT's DiscreteDenoiser snaps sigma."""
    table = _full_schedule()
    return table[(a - table[:, None]).abs().argmin(dim=0)]


def _lambda(a: torch.Tensor) -> torch.Tensor:
    """Half log-SNR of sqrt(abar) ``a``: log sqrt(abar / (1 - abar)) (-inf at zero SNR)."""
    abar = a**2
    return ((abar / (1 - abar)) ** 0.5).log()


def sample_sat_dpm(denoiser: Denoiser, noise: NoiseSource, shape: tuple[int, ...], num_steps: int, cfg: float,
                   cfg_schedule: str = "dynamic", trace: list | None = None,
                   on_step: Callable[[int, torch.Tensor], None] | None = None) -> torch.Tensor:
    """Draw the initial latent (B, F, C, H, W) from ``noise`` and denoise it in ``num_steps`` model calls.

    ``trace``, if given, receives one ``(timestep, guidance)`` per model call; ``on_step(i, x)`` sees x after step i.
    """
    timesteps = sat_timesteps(num_steps)
    a_all = torch.cat([sat_sqrt_alphas_cumprod(tuple(timesteps)), torch.ones(1)])  # noisy -> clean, then 1
    x = noise.randn(shape).to(torch.float32)
    ones = x.new_ones([x.shape[0]])
    old = None
    for i, t in enumerate(timesteps):
        a, a_next = ones * a_all[i], ones * a_all[i + 1]
        guidance = dynamic_cfg_scale(cfg, t, num_steps) if cfg_schedule == "dynamic" else cfg
        if trace is not None:
            trace.append((t, guidance))
        q = _bcast(quantize_sqrt_alpha(a), x)
        c_skip, c_out = q, -((1 - q**2) ** 0.5)
        denoised = denoiser(x, ones * t, guidance, transform=lambda out, inp: out * c_out + inp * c_skip).float()
        if i == len(timesteps) - 1:  # SAT's idx == 1: the last call returns the x0 prediction
            if on_step is not None:
                on_step(i, denoised)
            return denoised
        lam, lam_next = _lambda(a), _lambda(a_next)
        h = lam_next - lam
        mult1 = _bcast(((1 - a_next**2) / (1 - a**2)) ** 0.5 * (-h).exp(), x)
        mult2 = _bcast((-2 * h).expm1() * a_next, x)
        mult_noise = _bcast((1 - a_next**2) ** 0.5 * (1 - (-2 * h).exp()) ** 0.5, x)
        eps = noise.randn(x.shape).to(x.device)
        if old is None:
            x_next = mult1 * x - mult2 * denoised + mult_noise * eps
        else:
            r = (lam - _lambda(ones * a_all[i - 1])) / h
            d = _bcast(1 + 1 / (2 * r), x) * denoised - _bcast(1 / (2 * r), x) * old
            eps = noise.randn(x.shape).to(x.device)  # the release draws again for the second-order update
            x_next = mult1 * x - mult2 * d + mult_noise * eps
        x, old = x_next, denoised
        if on_step is not None:
            on_step(i, x)
    return x


def _bcast(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.reshape(v.shape + (1,) * (like.ndim - v.ndim)).to(like.device)
