"""Offline metrics against hand-computed values and independent implementations."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fvbench.metrics.offline import (PSNR, SSIM, HighFrequencyRatio, LaplacianVariance, MotionMagnitude,
                                     TemporalFlickering)


def test_flicker_is_vbench_formula_on_a_hand_made_clip():
    video = np.zeros((3, 2, 2, 3), dtype=np.uint8)
    video[1, 0, 0] = 255  # pair 1: one pixel of 4 changes by 255 in all channels -> mean |diff| = 63.75
    video[2] = video[1]  # pair 2: no change
    # VBench: mean over pairs of per-pair MAE = (63.75 + 0) / 2; score = (255 - 31.875) / 255
    assert TemporalFlickering().score(video, prompt="") == pytest.approx((255 - 31.875) / 255, abs=1e-12)
    # uint8 wrap-around must not happen: 0 -> 200 is a difference of 200, not 56
    two = np.zeros((2, 1, 1, 3), dtype=np.uint8)
    two[0] = 200
    assert TemporalFlickering().score(two, prompt="") == pytest.approx((255 - 200) / 255)


def test_flicker_matches_vbench_per_pair_loop_on_random_clip():
    rng = np.random.default_rng(1)
    video = rng.integers(0, 256, size=(7, 12, 10, 3), dtype=np.uint8)
    per_pair = [np.mean(np.abs(video[i].astype(np.float32) - video[i + 1].astype(np.float32))) for i in range(6)]
    assert TemporalFlickering().score(video, prompt="") == pytest.approx((255 - np.mean(per_pair)) / 255, rel=1e-6)
    with pytest.raises(ValueError, match="2 frames"):
        TemporalFlickering().score(video[:1], prompt="")


def _textured(h=96, w=128, seed=0):
    """A structured test image: stripes of several frequencies plus edges plus a little noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    img = 128 + 60 * np.sin(x / 1.3) * (y % 32 < 16) + 50 * np.sign(np.sin(y / 5.0)) + rng.normal(0, 4, (h, w))
    return np.clip(img, 0, 255).astype(np.uint8)


def _blur(video, k=5):
    x = torch.from_numpy(video).permute(0, 3, 1, 2).float()
    kernel = torch.ones(3, 1, k, k) / (k * k)
    x = F.conv2d(F.pad(x, (k // 2,) * 4, mode="replicate"), kernel, groups=3)
    return x.round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()


@pytest.mark.parametrize("metric", [LaplacianVariance(), HighFrequencyRatio()], ids=lambda m: m.name)
def test_detail_separates_a_sharp_video_from_the_same_video_blurred(metric):
    sharp = np.stack([np.repeat(_textured(seed=s)[..., None], 3, axis=-1) for s in range(5)])
    blurred = _blur(sharp)
    s, b = metric.score(sharp, prompt=""), metric.score(blurred, prompt="")
    assert s > 2 * b > 0
    # and a 4x down-then-up sampled video (what stage II starts from) has less detail than the original
    up = F.interpolate(F.avg_pool2d(torch.from_numpy(sharp).permute(0, 3, 1, 2).float(), 4), scale_factor=4,
                       mode="bilinear").round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()
    assert s > metric.score(up, prompt="")


def test_hf_ratio_of_pure_tones():
    x = np.arange(64)
    low = np.repeat((128 + 100 * np.cos(2 * np.pi * 0.0625 * x))[None, :], 32, axis=0)  # 1/16 cycle/px: below 1/8
    high = np.repeat((128 + 100 * np.cos(2 * np.pi * 0.25 * x))[None, :], 32, axis=0)  # 1/4 cycle/px: above
    as_video = lambda img: np.repeat(np.clip(img, 0, 255).astype(np.uint8)[None, ..., None], 3, axis=-1)  # noqa: E731
    m = HighFrequencyRatio()
    assert m.score(as_video(low), prompt="") < 0.01
    assert m.score(as_video(high), prompt="") > 0.99


def _pan(shape, velocity, factor=1):
    """A camera pan over a textured image: frame i is a crop at offset i*velocity (sub-pixel via bilinear)."""
    f, h, w = shape
    rng = np.random.default_rng(0)
    big = F.avg_pool2d(torch.from_numpy(rng.random((1, 1, h + 80, w + 80))), 3, stride=1)
    frames = []
    for i in range(f):
        oy, ox = 20 + velocity[0] * i, 20 + velocity[1] * i
        ys = (torch.arange(h, dtype=torch.float64) + oy) / (big.shape[2] - 1) * 2 - 1
        xs = (torch.arange(w, dtype=torch.float64) + ox) / (big.shape[3] - 1) * 2 - 1
        grid = torch.stack(torch.meshgrid(ys, xs, indexing="ij")[::-1], -1)[None]
        frame = F.grid_sample(big, grid, align_corners=True)[0, 0] * 255
        frames.append(frame.round().clamp(0, 255).byte().numpy())
    return np.repeat(np.stack(frames)[..., None], 3, axis=-1)


@pytest.mark.parametrize("shape,velocity", [((5, 96, 128), (0.0, 1.5)), ((5, 96, 128), (2.0, -3.0)),
                                            ((4, 120, 600), (1.2, 4.4))])  # the last is pooled 3x (600 > 256)
def test_motion_measures_a_sub_pixel_pan(shape, velocity):
    got = MotionMagnitude().score(_pan(shape, velocity), prompt="")
    assert got == pytest.approx(np.hypot(*velocity), abs=0.2)


def test_motion_of_a_still_video_is_zero_and_needs_two_frames():
    still = np.repeat(_pan((1, 64, 64), (0, 0)), 4, axis=0)
    assert MotionMagnitude().score(still, prompt="") == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError):
        MotionMagnitude().score(still[:1], prompt="")


def test_psnr_against_hand_formula_and_ssim_identity():
    rng = np.random.default_rng(2)
    a = rng.integers(20, 230, size=(3, 16, 24, 3), dtype=np.uint8)
    b = a.copy()
    b[0] += 10  # MSE over the whole clip: one frame of three off by 10/255
    mse = (10 / 255) ** 2 / 3
    assert PSNR().score(b, prompt="", reference=a) == pytest.approx(10 * np.log10(1 / mse), rel=1e-5)
    assert SSIM().score(a, prompt="", reference=a) == pytest.approx(1.0, abs=1e-6)
    assert SSIM().score(b, prompt="", reference=a) < 1.0


def test_ssim_is_computed_on_frames_pooled_to_256px():
    from torchmetrics.functional.image import structural_similarity_index_measure as ssim

    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, size=(2, 64, 600, 3), dtype=np.uint8)  # long side 600 -> pooled by 3
    b = np.clip(a.astype(int) + rng.integers(-30, 31, size=a.shape), 0, 255).astype(np.uint8)
    t = lambda v: F.avg_pool2d(torch.from_numpy(v).permute(0, 3, 1, 2).float() / 255, 3)  # noqa: E731
    assert SSIM().score(a, prompt="", reference=b) == pytest.approx(float(ssim(t(a), t(b), data_range=1.0)), rel=1e-6)
    assert "256" in SSIM().version


def test_reference_metrics_refuse_bad_input():
    a = np.zeros((2, 8, 8, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="reference"):
        PSNR().score(a, prompt="")
    with pytest.raises(ValueError, match="differ in shape"):
        SSIM().score(a, prompt="", reference=a[:1])
    with pytest.raises(ValueError, match="uint8"):
        TemporalFlickering().score(a.astype(np.float32), prompt="")
