"""Stage II's numbers against the formulas of arXiv 2502.05179 and values checkable by hand."""

import math

import pytest
import torch

from fvbench.generation.schedules import (
    degradation_coefficients,
    dynamic_cfg_scale,
    shifted_time_grid,
    zero_snr_sqrt_alphas_cumprod,
)


def test_degradation_at_675_matches_paper():
    a, b = degradation_coefficients(675)
    assert a == pytest.approx(0.26396, abs=5e-6)
    assert b == pytest.approx(0.96453, abs=5e-6)
    assert a * a + b * b == pytest.approx(1.0, abs=1e-12)


def test_zero_snr_schedule_by_formula():
    s = zero_snr_sqrt_alphas_cumprod()
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
    raw = torch.cumprod(1 - betas, 0).sqrt()
    expected = (raw - raw[-1]) * raw[0] / (raw[0] - raw[-1])
    torch.testing.assert_close(s, expected, rtol=0, atol=1e-15)
    assert float(s[-1]) == 0.0  # zero terminal SNR: step 999 is pure noise (the vanilla cascade)
    assert float(s[0]) == pytest.approx(math.sqrt(1 - 0.00085), rel=1e-12)
    assert degradation_coefficients(999) == (0.0, 1.0)


@pytest.mark.parametrize("nfe,expected", [
    (4, [0, 0.1176, 0.2857, 0.5455, 1]),
    (5, [0, 0.0909, 0.2105, 0.375, 0.6154, 1]),
])
def test_shifted_grid_matches_paper(nfe, expected):
    grid = shifted_time_grid(nfe, 2.5)
    assert grid.tolist() == pytest.approx(expected, abs=5e-5)


def test_shifted_grid_formula_and_identity_shift():
    t = torch.linspace(0, 1, 9, dtype=torch.float64)
    s = 3.7
    torch.testing.assert_close(shifted_time_grid(8, s), 1 - s * (1 - t) / (1 + (s - 1) * (1 - t)))
    torch.testing.assert_close(shifted_time_grid(8, 1.0), t)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError):
        shifted_time_grid(0)
    with pytest.raises(ValueError):
        degradation_coefficients(1000)


def test_dynamic_cfg_is_cogvideox_formula():
    # diffusers CogVideoXPipeline: 1 + g * (1 - cos(pi * ((n - t) / n) ** 5)) / 2 with t the model timestep
    for t in (999, 500, 21, 0):
        x = (50 - t) / 50
        assert dynamic_cfg_scale(6.0, t, 50) == pytest.approx(1 + 6.0 * (1 - math.cos(math.pi * x**5.0)) / 2)
