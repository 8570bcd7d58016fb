"""Metrics: formulas on hand-made clips, detail separates sharp from blurred, CLIPScore from a tiny local CLIP."""

import json
import socket

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fvbench.errors import MissingWeightsError, UnknownNameError
from fvbench.metrics.registry import get_metric, resolve, score_video

RNG = np.random.default_rng(0)


def _noise_video(f=9, h=64, w=96):
    return RNG.integers(0, 256, size=(f, h, w, 3), dtype=np.uint8)


def test_flicker_matches_vbench_formula_on_a_hand_made_clip():
    video = np.zeros((3, 4, 4, 3), dtype=np.uint8)
    video[1] = 51  # |0-51| then |51-0|: mean abs difference 51
    assert get_metric("temporal_flickering").score(video, prompt="") == pytest.approx((255 - 51) / 255)
    still = np.full((5, 8, 8, 3), 77, dtype=np.uint8)
    assert get_metric("temporal_flickering").score(still, prompt="") == 1.0


def _blur(video):
    x = torch.from_numpy(video).permute(0, 3, 1, 2).float()
    k = torch.ones(3, 1, 5, 5) / 25
    return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="replicate"), k, groups=3).round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()


@pytest.mark.parametrize("name", ["detail_laplacian_var", "detail_hf_ratio"])
def test_detail_separates_sharp_from_blurred(name):
    sharp = _noise_video()
    m = get_metric(name)
    assert m.score(sharp, prompt="") > 3 * m.score(_blur(sharp), prompt="")


def test_motion_recovers_a_known_shift():
    base = _noise_video(f=1, h=64, w=64)[0]
    video = np.stack([np.roll(base, shift=(2 * i, 3 * i), axis=(0, 1)) for i in range(5)])
    assert get_metric("motion_px").score(video, prompt="") == pytest.approx(np.hypot(2, 3), abs=1e-4)


def test_reference_metrics():
    a = _noise_video()
    assert get_metric("ssim_vs_ref").score(a, prompt="", reference=a) == pytest.approx(1.0)
    b = np.clip(a.astype(int) + 10, 0, 255).astype(np.uint8)
    mse = ((a / 255.0 - b / 255.0) ** 2).mean()
    assert get_metric("psnr_vs_ref").score(a, prompt="", reference=b) == pytest.approx(10 * np.log10(1 / mse), rel=1e-4)
    out = score_video([get_metric("psnr_vs_ref")], a, "p")  # no reference: the error is recorded, not raised
    assert out["psnr_vs_ref"][0] is None and "reference" in out["psnr_vs_ref"][1]


def test_registry_errors(monkeypatch):
    with pytest.raises(UnknownNameError, match="known:"):
        get_metric("fvd_typo")
    monkeypatch.delenv("FVBENCH_CLIP_DIR", raising=False)
    with pytest.raises(MissingWeightsError, match="FVBENCH_CLIP_DIR"):
        resolve(["temporal_flickering", "clip_score"])
    monkeypatch.setenv("FVBENCH_CLIP_DIR", "/nonexistent/clip")
    with pytest.raises(MissingWeightsError, match="/nonexistent/clip/config.json"):
        resolve(["clip_score"])


def _tiny_clip(folder):
    from transformers import CLIPConfig, CLIPModel, CLIPTokenizer

    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in letters:
        vocab[c] = len(vocab)
        vocab[c + "</w>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt")).save_pretrained(folder)
    cfg = CLIPConfig(
        text_config={"vocab_size": len(vocab), "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                     "num_attention_heads": 2, "max_position_embeddings": 16, "eos_token_id": 1, "bos_token_id": 0,
                     "pad_token_id": 1},
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
                       "image_size": 32, "patch_size": 8},
        projection_dim=16)
    torch.manual_seed(0)
    CLIPModel(cfg).save_pretrained(folder)


def test_clip_score_from_a_tiny_local_model_offline(tmp_path, monkeypatch):
    _tiny_clip(tmp_path)
    monkeypatch.setenv("FVBENCH_CLIP_DIR", str(tmp_path))

    def no_network(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    (metric,) = resolve(["clip_score"])
    video = _noise_video(f=9, h=48, w=64)
    a = metric.score(video, prompt="a red cat")
    b = metric.score(video, prompt="a blue dog")
    assert np.isfinite(a) and 0 <= a <= 100
    assert a != b  # the prompt matters


def test_run_stores_offline_metrics_and_score_adds_reference_metrics(tmp_path, capsys):
    from fvbench import load_results
    from fvbench.cli import main

    prompts = tmp_path / "p.txt"
    prompts.write_text("a red cat\n")
    out = tmp_path / "run"
    assert main(["run", "--suite", str(prompts), "--presets", "tiny-flashvideo,tiny-dit", "--stage1-nfe", "2",
                 "--stage2-nfe", "1", "--out", str(out)]) == 0
    df = load_results(out)
    for name in ("temporal_flickering", "detail_laplacian_var", "detail_hf_ratio", "motion_px"):
        assert df[f"metric:{name}"].notna().all()
    assert main(["score", str(out), "--metrics", "psnr_vs_ref,ssim_vs_ref", "--reference", "tiny-dit_s1-2"]) == 0
    df = load_results(out).set_index("config")
    assert np.isfinite(df.loc["tiny-flashvideo_s1-2_s2-1", "metric:psnr_vs_ref"])
    assert df.loc["tiny-dit_s1-2", "metric:ssim_vs_ref"] == pytest.approx(1.0)
    capsys.readouterr()
    assert main(["score", str(out), "--metrics", "psnr_vs_ref"]) == 2
    assert "need --reference" in capsys.readouterr().err
    import os

    os.environ.pop("FVBENCH_CLIP_DIR", None)
    assert main(["run", "--suite", str(prompts), "--presets", "tiny-dit", "--metrics", "clip_score",
                 "--out", str(tmp_path / "r2")]) == 2
    assert "FVBENCH_CLIP_DIR" in capsys.readouterr().err and not (tmp_path / "r2").exists()


class _TinyI3D(torch.nn.Module):
    """Stands in for a Kinetics-400 I3D: (N, 3, 16, 224, 224) -> (N, 8) features."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv3d(3, 8, kernel_size=(4, 16, 16), stride=(4, 16, 16))

    def forward(self, x):
        return self.conv(x).mean(dim=(2, 3, 4))


def test_fvd_from_a_local_torchscript_model_end_to_end(tmp_path, monkeypatch, capsys):
    from fvbench.cli import main
    from fvbench.metrics.fvd import frechet_distance
    from fvbench.store import open_store

    torch.manual_seed(0)
    path = tmp_path / "i3d.pt"
    torch.jit.script(_TinyI3D()).save(str(path))
    monkeypatch.setenv("FVBENCH_I3D", str(path))
    monkeypatch.setattr(socket.socket, "connect", lambda *a, **k: (_ for _ in ()).throw(AssertionError("network")))
    a = torch.randn(50, 4)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
    assert frechet_distance(a, a + 3) == pytest.approx(4 * 9, rel=1e-6)  # mean shift of 3 in 4 dims
    prompts = tmp_path / "p.txt"
    prompts.write_text("a red cat\na blue dog\na green tree\n")
    out = tmp_path / "run"
    assert main(["run", "--suite", str(prompts), "--presets", "tiny-flashvideo,tiny-dit", "--stage1-nfe", "2",
                 "--stage2-nfe", "1", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["score", str(out), "--metrics", "fvd", "--reference", "tiny-dit_s1-2"]) == 0
    info = open_store(out).set_metric("fvd", "tiny-flashvideo_s1-2_s2-1")
    assert info["error"] is None and np.isfinite(info["value"]) and info["value"] > 0 and info["videos"] == 3
    assert main(["run", "--suite", str(prompts), "--presets", "tiny-dit", "--metrics", "fvd",
                 "--out", str(tmp_path / "r2")]) == 2
    inception = tmp_path / "inception.pt"
    torch.jit.script(torch.nn.Sequential(torch.nn.Conv2d(3, 6, 23, stride=23), torch.nn.AdaptiveAvgPool2d(1))).save(str(inception))
    monkeypatch.setenv("FVBENCH_INCEPTION", str(inception))
    assert main(["score", str(out), "--metrics", "fid", "--reference", "tiny-dit_s1-2"]) == 0
    fid = open_store(out).set_metric("fid", "tiny-flashvideo_s1-2_s2-1")
    assert fid["error"] is None and np.isfinite(fid["value"]) and fid["value"] > 0
