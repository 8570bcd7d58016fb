"""Metrics from local weights, on tiny random stand-ins saved to disk and loaded by the real code, offline.

Every test here runs with socket connections forbidden (any attempt fails the test), so nothing reaches a hub.
"""

import json
import socket
import warnings

import numpy as np
import pytest
import torch

from fvbench.errors import MissingWeightsError
from fvbench.metrics.registry import get_metric, resolve, score_video

RNG = np.random.default_rng(0)


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any socket connect or DNS lookup raises, and is recorded: the test fails even if a library swallowed it."""
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args[1:])
        raise OSError(f"network access attempted: {args[1:]!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    yield
    assert not attempts, f"network access attempted: {attempts}"


def _video(f=9, h=48, w=64):
    return RNG.integers(0, 256, size=(f, h, w, 3), dtype=np.uint8)


# ---------------------------------------------------------------------------------------------------- CLIPScore
def _tiny_clip(folder, with_processor=True):
    """A random CLIP (text 16 tokens, image 32x32) with a character-level BPE tokenizer, saved like a hub folder."""
    from transformers import CLIPConfig, CLIPModel, CLIPProcessor, CLIPTokenizer
    from transformers.models.clip import CLIPImageProcessorPil

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in "abcdefghijklmnopqrstuvwxyz":
        vocab[c] = len(vocab)
        vocab[c + "</w>"] = len(vocab)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))
    if with_processor:
        image_processor = CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
        CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
    else:
        tokenizer.save_pretrained(folder)
    cfg = CLIPConfig(
        text_config={"vocab_size": len(vocab), "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                     "num_attention_heads": 2, "max_position_embeddings": 16, "eos_token_id": 1, "bos_token_id": 0,
                     "pad_token_id": 1},
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
                       "image_size": 32, "patch_size": 8},
        projection_dim=16)
    torch.manual_seed(0)
    CLIPModel(cfg).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    return _tiny_clip(tmp_path_factory.mktemp("clip"))


def test_clip_score_from_a_tiny_local_clip_matches_the_definition(clip_dir, monkeypatch):
    from fvbench.metrics.clip import load_clip

    monkeypatch.setenv("FVBENCH_CLIP_DIR", str(clip_dir))
    (metric,) = resolve(["clip_score"])  # loads the model in prepare()
    video = _video()
    got = metric.score(video, prompt="a red cat")
    assert np.isfinite(got) and 0 <= got <= 100
    assert got != metric.score(video, prompt="a blue dog")
    # the definition, by hand: 100 * mean cosine over the 8 sampled frames, clamped at 0
    model, processor = load_clip(str(clip_dir))
    idx = np.unique(np.linspace(0, 8, 8).round().astype(int))
    pixels = processor(images=list(torch.from_numpy(video[idx]).permute(0, 3, 1, 2)), return_tensors="pt")
    tokens = processor(text=["a red cat"], return_tensors="pt", padding=True)
    with torch.no_grad():
        img = model.model.get_image_features(pixel_values=pixels["pixel_values"]).pooler_output
        txt = model.model.get_text_features(input_ids=tokens["input_ids"]).pooler_output
    cos = torch.nn.functional.cosine_similarity(img, txt, dim=-1)
    assert got == pytest.approx(max(float(100 * cos.mean()), 0.0), rel=1e-4, abs=1e-4)


def test_clip_score_keeps_the_end_token_of_a_long_prompt(clip_dir):
    from fvbench.metrics.clip import load_clip

    _, processor = load_clip(str(clip_dir))
    tokens = processor(text=["abcdefghijklmnopqrstuvwxyz " * 3], return_tensors="pt", padding=True)
    assert tokens["input_ids"].shape[1] == 16 and int(tokens["input_ids"][0, -1]) == 1  # <|endoftext|>
    value = get_metric("clip_score", folder=str(clip_dir)).score(_video(f=3), prompt="abcdefghijklmnopqrstuvwxyz " * 3)
    assert np.isfinite(value)


def test_clip_folder_without_processor_config_uses_clip_preprocessing(tmp_path):
    folder = _tiny_clip(tmp_path / "bare", with_processor=False)
    assert not (folder / "preprocessor_config.json").exists() and not (folder / "processor_config.json").exists()
    assert np.isfinite(get_metric("clip_score", folder=str(folder)).score(_video(f=2), prompt="a cat"))


def test_clip_missing_files_are_named(tmp_path, monkeypatch):
    monkeypatch.delenv("FVBENCH_CLIP_DIR", raising=False)
    with pytest.raises(MissingWeightsError, match=r"\$FVBENCH_CLIP_DIR"):
        resolve(["clip_score"])
    (tmp_path / "config.json").write_text("{}")
    monkeypatch.setenv("FVBENCH_CLIP_DIR", str(tmp_path))
    missing = get_metric("clip_score").missing()
    assert missing == [f"missing {tmp_path / 'model.safetensors'} (or pytorch_model.bin, model.safetensors.index.json)",
                       f"missing {tmp_path / 'tokenizer.json'} (or vocab.json)"]


# ---------------------------------------------------------------------------------------------------- FVD / FID
class PlainI3D(torch.nn.Module):
    """Stands in for a Kinetics-400 I3D: (N, 3, 16, 224, 224) in [-1, 1] -> (N, 8)."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv3d(3, 8, kernel_size=(4, 16, 16), stride=(4, 16, 16))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x).mean(dim=(2, 3, 4))


class StyleGANVI3D(torch.nn.Module):
    """Stands in for StyleGAN-V's i3d_torchscript.pt signature; refuses to be called the wrong way."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv3d(3, 6, kernel_size=(4, 16, 16), stride=(4, 16, 16))

    def forward(self, x: torch.Tensor, rescale: bool = True, resize: bool = True, return_features: bool = False):
        assert not rescale and not resize and return_features
        assert x.shape[2:] == (16, 224, 224) and float(x.min()) >= -1.0 and float(x.max()) <= 1.0
        return self.conv(x).mean(dim=(2, 3, 4))


class PlainInception(torch.nn.Module):
    """Stands in for an Inception feature extractor: float [0, 1] (N, 3, 299, 299) -> (N, 6, 1, 1)."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 6, 23, stride=23)
        self.pool = torch.nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.shape[2:] == (299, 299) and float(x.max()) <= 1.0
        return self.pool(self.conv(x))


class ADAInception(torch.nn.Module):
    """Stands in for StyleGAN2-ADA's inception-2015-12-05.pt: uint8 frames at any size, return_features=True."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 5, 4, stride=4)

    def forward(self, img: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        assert img.dtype == torch.uint8 or float(img.abs().max()) == 0.0  # the size probe is zeros
        x = torch.nn.functional.interpolate(img.float(), size=(64, 64), mode="bilinear")
        return self.conv(x).mean(dim=(2, 3))


def _save(module, path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.manual_seed(0)
        torch.jit.script(module).save(str(path))
    return str(path)


def _sets(n=4, shift=0):
    a = [_video(f=10, h=40, w=56) for _ in range(n)]
    b = [np.clip(_video(f=10, h=40, w=56).astype(int) // 2 + shift, 0, 255).astype(np.uint8) for _ in range(n)]
    return a, b


@pytest.mark.parametrize("net", [PlainI3D, StyleGANVI3D])
def test_fvd_from_a_local_torchscript_i3d_equals_the_frechet_distance_of_its_features(net, tmp_path):
    from fvbench.metrics.fvd import frechet_distance, i3d_input

    path = _save(net(), tmp_path / "i3d.pt")
    fvd = get_metric("fvd", path=path)
    fvd.prepare()
    videos, refs = _sets()
    value = fvd.compute_set(videos, refs)
    assert np.isfinite(value) and value > 0
    # reference computation: the same network on the same inputs, our own Frechet distance in float64
    model = torch.jit.load(path)
    kwargs = {"rescale": False, "resize": False, "return_features": True} if net is StyleGANVI3D else {}
    feats = lambda vs: torch.cat([model(i3d_input(v)[None], **kwargs) for v in vs])  # noqa: E731
    with torch.no_grad():
        assert value == pytest.approx(frechet_distance(feats(videos), feats(refs)), rel=1e-4)
    assert fvd.compute_set(refs, refs) == pytest.approx(0.0, abs=1e-3)
    assert fvd.details()["called_with"] == kwargs


def test_fvd_keeps_the_reference_set_across_configurations(tmp_path):
    fvd = get_metric("fvd", path=_save(PlainI3D(), tmp_path / "i3d.pt"))
    videos, refs = _sets()
    expected = fvd.compute_set(videos, refs)
    fvd.reset(keep_reference=False)
    fvd.update(refs, real=True)
    fvd.update(refs, real=False)
    fvd.reset(keep_reference=True)  # drops the evaluated set only
    fvd.update(iter(videos), real=False)  # a generator: videos are streamed, not held
    assert fvd.compute() == pytest.approx(expected, rel=1e-6)
    fvd.reset(keep_reference=True)
    fvd.update(videos[:1], real=False)
    with pytest.raises(ValueError, match="at least 2 videos"):
        fvd.compute()


def test_i3d_input_follows_the_fvd_convention():
    from fvbench.metrics.fvd import i3d_input

    video = np.zeros((20, 30, 60, 3), dtype=np.uint8)
    for i in range(20):
        video[i] = i * 10
    x = i3d_input(video)
    assert x.shape == (3, 16, 224, 224) and x.dtype == torch.float32
    assert float(x[0, 0, 0, 0]) == pytest.approx(-1.0) and float(x[0, 15, 0, 0]) == pytest.approx(150 / 127.5 - 1)
    u = i3d_input(video, clip="uniform")
    assert float(u[0, 15, 0, 0]) == pytest.approx(190 / 127.5 - 1)  # the last frame
    short = i3d_input(video[:9])
    assert torch.equal(short[:, 8], short[:, 15])  # padded with the last frame
    assert "16first" in get_metric("fvd").version and "224stretch" in get_metric("fvd").version


@pytest.mark.parametrize("net", [PlainInception, ADAInception])
def test_fid_from_a_local_torchscript_inception(net, tmp_path):
    from fvbench.metrics.fid import FID
    from fvbench.metrics.fvd import frechet_distance

    path = _save(net(), tmp_path / "inception.pt")
    fid = FID(path=path)
    videos, refs = _sets()
    value = fid.compute_set(videos, refs)
    assert np.isfinite(value) and value > 0
    model = torch.jit.load(path)
    native = net is ADAInception

    def feats(vs):
        out = []
        for v in vs:
            x = torch.from_numpy(v[np.unique(np.linspace(0, len(v) - 1, 8).round().astype(int))]).permute(0, 3, 1, 2)
            if native:
                out.append(model(x, return_features=True))
            else:
                x = torch.nn.functional.interpolate(x.float() / 255, size=(299, 299), mode="bilinear",
                                                    align_corners=False, antialias=True).clamp(0, 1)
                out.append(model(x).flatten(1))
        return torch.cat(out)

    with torch.no_grad():
        assert value == pytest.approx(frechet_distance(feats(videos), feats(refs)), rel=1e-4)


def test_frechet_distance_by_hand():
    from fvbench.metrics.fvd import frechet_distance

    a = torch.randn(200, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)
    assert frechet_distance(a, a + 2) == pytest.approx(3 * 4, rel=1e-9)  # mean shift of 2 in 3 dims
    assert frechet_distance(a, 3 * a) == pytest.approx(float(((a.mean(0) * 2) ** 2).sum() + 4 * torch.cov(a.T).trace()),
                                                       rel=1e-6)  # (3 - 1)^2 tr(S) for a scaled copy


def test_missing_network_fails_fast_with_the_path(monkeypatch, tmp_path):
    monkeypatch.setenv("FVBENCH_I3D", str(tmp_path / "nope.pt"))
    monkeypatch.delenv("FVBENCH_INCEPTION", raising=False)
    with pytest.raises(MissingWeightsError) as e:
        resolve(["fvd", "fid", "temporal_flickering"])
    assert str(tmp_path / "nope.pt") in str(e.value) and "$FVBENCH_INCEPTION" in str(e.value)


def test_set_metric_has_no_per_video_value(tmp_path):
    out = score_video([get_metric("fvd", path=_save(PlainI3D(), tmp_path / "i3d.pt"))], _video(), "p")
    assert out["fvd"].value is None and "set-level" in out["fvd"].error
