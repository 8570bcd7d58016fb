"""ShapesWorld networks and the pixel-space components that let them run through the generator unchanged.

* :class:`ShapesWorldUNet` - a (2+1)D convolutional U-Net (spatial 3x3 conv per frame, then temporal conv of 3 per
  pixel), GroupNorm + SiLU residual blocks conditioned by scale/shift on (timestep MLP + label embedding). It keeps
  the generator's transformer calling convention: ``(hidden_states (B, F, C, H, W), encoder_hidden_states,
  timestep, ...) -> (velocity,)`` with timestep = 1000 * (1 - t) of the flow, so the generator's ``flow-euler``
  solver drives it. ``patch`` > 1 folds p x p pixels into channels (pixel-unshuffle) around the U-Net, with a
  full-resolution stem and head, so a stage-II model works at the low-resolution grid while seeing every pixel.
  ``prediction: sample`` lets the network predict the clean video and converts it to the flow velocity.
* :class:`LabelTokenizer` / :class:`LabelEncoder` - the text-encoder slot: a prompt becomes three label ids
  (colour, shape, direction; 0 = not named) and then a multi-hot vector of 13; the all-zero vector (the generator's
  unconditional branch) is the null label, which training teaches with joint label dropout.
* :class:`IdentityVAE` - pixel space: spatial factor 1, scaling factor 1, no temporal compression.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin

from fvbench.errors import FvbenchError
from fvbench.shapesworld.world import COLOUR_NAMES, DIRECTION_NAMES, SHAPES, parse_words

LABEL_SIZES: tuple[int, int, int] = (len(COLOUR_NAMES), len(SHAPES), len(DIRECTION_NAMES))
LABEL_DIM = sum(LABEL_SIZES)  # 13


# -- labels: the text-encoder slot -----------------------------------------------------------------------------
@dataclass
class LabelBatch:
    """What the tokenizer returns: ``input_ids`` (B, 3) of 1-based attribute indices, 0 where the prompt names none."""

    input_ids: torch.Tensor


class LabelTokenizer:
    """Prompt -> (colour, shape, direction) ids; words outside the world are ignored (an unnamed attribute is null).

    Accepts the keyword arguments the generator passes to a Hugging Face tokenizer and ignores padding options:
    the output always has 3 positions.
    """

    def __call__(self, texts: list[str] | str, **_: Any) -> LabelBatch:
        texts = [texts] if isinstance(texts, str) else list(texts)
        rows = []
        for text in texts:
            found = parse_words(text)
            rows.append([
                COLOUR_NAMES.index(found["colour"]) + 1 if "colour" in found else 0,
                SHAPES.index(found["shape"]) + 1 if "shape" in found else 0,
                DIRECTION_NAMES.index(found["direction"]) + 1 if "direction" in found else 0,
            ])
        return LabelBatch(torch.tensor(rows, dtype=torch.long))


def multi_hot(ids: torch.Tensor) -> torch.Tensor:
    """(B, 3) ids (1-based, 0 = null) -> (B, 1, 13) float multi-hot; all zeros is the null label."""
    parts, offset = [], 0
    for k, n in enumerate(LABEL_SIZES):
        classes = torch.arange(1, n + 1, device=ids.device)
        parts.append((ids[:, k, None] == classes).float())
        offset += n
    return torch.cat(parts, dim=1)[:, None, :]


class LabelEncoder(nn.Module):
    """The "text encoder": label ids -> multi-hot (B, 1, 13). No weights; returns a 1-tuple like transformers' encoders."""

    def __init__(self) -> None:
        super().__init__()
        self.config = type("Config", (), {"d_model": LABEL_DIM})()

    def forward(self, input_ids: torch.Tensor) -> tuple[torch.Tensor]:
        if input_ids.ndim != 2 or input_ids.shape[1] != len(LABEL_SIZES):
            raise FvbenchError(f"label ids must be (batch, 3), got {tuple(input_ids.shape)}")
        return (multi_hot(input_ids),)


# -- pixel space: the VAE slot ----------------------------------------------------------------------------------
@dataclass
class _Dist:
    x: torch.Tensor

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.x


@dataclass
class _Encoded:
    latent_dist: _Dist


@dataclass
class _Decoded:
    sample: torch.Tensor


class IdentityVAE(nn.Module):
    """Pixel space as a VAE: encode and decode return their input; spatial factor 1, scaling factor 1."""

    def __init__(self, scaling_factor: float = 1.0) -> None:
        super().__init__()
        self.config = type("Config", (), {"scaling_factor": float(scaling_factor), "latent_channels": 3})()

    def encode(self, x: torch.Tensor) -> _Encoded:
        return _Encoded(_Dist(x))

    def decode(self, z: torch.Tensor) -> _Decoded:
        return _Decoded(z)


# -- the network -------------------------------------------------------------------------------------------------
def timestep_features(timestep: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal features of timesteps in [0, 1000] (B,) -> (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=timestep.device, dtype=torch.float32) / half)
    args = timestep.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)


class TimestepMLP(nn.Module):
    """Sinusoidal timestep features -> MLP -> conditioning vector."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.linear_1 = nn.Linear(dim, dim)
        self.linear_2 = nn.Linear(dim, dim)

    def forward(self, timestep: torch.Tensor) -> torch.Tensor:
        return self.linear_2(F.silu(self.linear_1(timestep_features(timestep, self.dim))))


class Conv2p1d(nn.Module):
    """(2+1)D convolution on (B, C, F, H, W): 3x3 spatial per frame, then 3-tap temporal per pixel."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.spatial = nn.Conv3d(c_in, c_out, (1, 3, 3), padding=(0, 1, 1))
        self.temporal = nn.Conv3d(c_out, c_out, (3, 1, 1), padding=(1, 0, 0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.temporal(self.spatial(x))


def _groups(channels: int) -> int:
    return math.gcd(8, channels)


class ResBlock(nn.Module):
    """GroupNorm -> SiLU -> conv -> GroupNorm * (1 + scale) + shift -> SiLU -> conv, plus a skip."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(c_in), c_in)
        self.conv1 = Conv2p1d(c_in, c_out)
        self.cond = nn.Linear(emb_dim, 2 * c_out)
        self.norm2 = nn.GroupNorm(_groups(c_out), c_out)
        self.conv2 = Conv2p1d(c_out, c_out)
        self.skip = nn.Conv3d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.cond(F.silu(emb))[:, :, None, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(F.silu(h))
        return self.skip(x) + h


class ShapesWorldUNet(ModelMixin, ConfigMixin):
    """Label-conditioned (2+1)D conv U-Net in the generator's transformer calling convention (see module doc).

    Config fields read by the generator and FLOP counter: ``in_channels``, ``text_embed_dim`` (label vector size),
    ``patch_size`` (1: the token grid is the pixel grid; the model's own folding is ``patch``), and
    ``use_rotary_positional_embeddings`` (False).
    """

    @register_to_config
    def __init__(self, in_channels: int = 3, out_channels: int = 3, channels: tuple[int, ...] = (32, 64, 128),
                 blocks_per_level: int = 1, emb_dim: int = 128, text_embed_dim: int = LABEL_DIM, patch: int = 1,
                 stem_channels: int = 16, prediction: str = "velocity", patch_size: int = 1,
                 use_rotary_positional_embeddings: bool = False) -> None:
        super().__init__()
        if prediction not in ("velocity", "sample"):
            raise FvbenchError(f"prediction must be 'velocity' or 'sample', got {prediction!r}")
        if patch_size != 1 or use_rotary_positional_embeddings:
            raise FvbenchError("ShapesWorldUNet works on the pixel grid: patch_size 1, no rotary embeddings")
        self.time_embedding = TimestepMLP(emb_dim)
        self.label_embedding = nn.Linear(text_embed_dim, emb_dim, bias=False)  # null label (zeros) -> 0
        c0 = channels[0]
        if patch > 1:
            self.stem = nn.Conv3d(in_channels, stem_channels, (1, 3, 3), padding=(0, 1, 1))
            self.conv_in = nn.Conv3d(stem_channels * patch * patch, c0, 1)
        else:
            self.conv_in = nn.Conv3d(in_channels, c0, (1, 3, 3), padding=(0, 1, 1))
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        prev = c0
        skips = []
        for i, c in enumerate(channels):
            for _ in range(blocks_per_level):
                self.down.append(ResBlock(prev, c, emb_dim))
                prev = c
                skips.append(c)
            if i < len(channels) - 1:
                self.downsample.append(nn.Conv3d(c, c, (1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)))
        self.mid = ResBlock(prev, prev, emb_dim)
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for i, c in reversed(list(enumerate(channels))):
            for _ in range(blocks_per_level):
                self.up.append(ResBlock(prev + skips.pop(), c, emb_dim))
                prev = c
            if i > 0:
                self.upsample.append(nn.Conv3d(c, c, (1, 3, 3), padding=(0, 1, 1)))
        self.norm_out = nn.GroupNorm(_groups(c0), c0)
        if patch > 1:
            self.unpatch = nn.Conv3d(c0, stem_channels * patch * patch, 1)
            self.head = nn.Sequential(nn.GroupNorm(_groups(2 * stem_channels), 2 * stem_channels), nn.SiLU(),
                                      nn.Conv3d(2 * stem_channels, stem_channels, (1, 3, 3), padding=(0, 1, 1)),
                                      nn.SiLU(),
                                      nn.Conv3d(stem_channels, out_channels, (1, 3, 3), padding=(0, 1, 1)))
            nn.init.zeros_(self.head[-1].weight)
            nn.init.zeros_(self.head[-1].bias)
        else:
            self.conv_out = nn.Conv3d(c0, out_channels, (1, 3, 3), padding=(0, 1, 1))
            nn.init.zeros_(self.conv_out.weight)
            nn.init.zeros_(self.conv_out.bias)

    @property
    def divisor(self) -> int:
        """What input height and width must be divisible by."""
        return self.config.patch * 2 ** (len(self.config.channels) - 1)

    def _fold(self, x: torch.Tensor, p: int) -> torch.Tensor:
        b, c, f, h, w = x.shape
        x = x.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w)
        x = F.pixel_unshuffle(x, p)
        return x.reshape(b, f, -1, h // p, w // p).permute(0, 2, 1, 3, 4)

    def _unfold(self, x: torch.Tensor, p: int) -> torch.Tensor:
        b, c, f, h, w = x.shape
        x = x.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w)
        x = F.pixel_shuffle(x, p)
        return x.reshape(b, f, -1, h * p, w * p).permute(0, 2, 1, 3, 4)

    def network(self, x: torch.Tensor, timestep: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The raw network output on (B, C, F, H, W) with timesteps (B,) and label vectors (B, 13)."""
        p = self.config.patch
        if x.shape[-1] % self.divisor or x.shape[-2] % self.divisor:
            raise FvbenchError(f"ShapesWorldUNet: {x.shape[-2]}x{x.shape[-1]} is not divisible by {self.divisor}")
        emb = self.time_embedding(timestep) + self.label_embedding(labels)
        if p > 1:
            stem = self.stem(x)
            h = self.conv_in(self._fold(stem, p))
        else:
            h = self.conv_in(x)
        skips = []
        per = self.config.blocks_per_level
        for i, block in enumerate(self.down):
            h = block(h, emb)
            skips.append(h)
            level = i // per
            if (i + 1) % per == 0 and level < len(self.downsample):
                h = self.downsample[level](h)
        h = self.mid(h, emb)
        for i, block in enumerate(self.up):
            h = block(torch.cat([h, skips.pop()], dim=1), emb)
            level = i // per
            if (i + 1) % per == 0 and level < len(self.upsample):
                h = F.interpolate(h, scale_factor=(1, 2, 2), mode="nearest")
                h = self.upsample[level](h)
        h = F.silu(self.norm_out(h))
        if p > 1:
            h = self._unfold(self.unpatch(h), p)
            return self.head(torch.cat([h, stem], dim=1))
        return self.conv_out(h)

    def forward(self, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor, timestep: torch.Tensor,
                image_rotary_emb: Any = None, timestep_cond: torch.Tensor | None = None,
                return_dict: bool = False) -> tuple[torch.Tensor]:
        """Flow velocity for latents (B, F, C, H, W) at DDPM-style timestep 1000 * (1 - t)."""
        x = hidden_states.permute(0, 2, 1, 3, 4)
        labels = encoder_hidden_states.float().sum(dim=1)
        timestep = timestep.float().reshape(-1).expand(x.shape[0]) if timestep.numel() == 1 else timestep.float()
        out = self.network(x, timestep, labels)
        if self.config.prediction == "sample":  # x_t = (1 - t) z0 + t x1  ->  v = (x1 - x_t) / (1 - t)
            t = (1.0 - timestep / 1000.0).view(-1, 1, 1, 1, 1)
            out = (out - x) / (1.0 - t).clamp(min=0.05)
        return (out.permute(0, 2, 1, 3, 4),)
