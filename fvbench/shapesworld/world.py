"""ShapesWorld: a procedural video world with known ground truth, small enough to train and score on a CPU.

One video: a shape (circle, square or triangle) of one of six colours moving 3 px per frame in one of four
directions over a plain grey background, 8 frames at 64x64 (high resolution). Inside the shape a 2-pixel checker
texture, fixed to the image grid at even coordinates, modulates the colour by +-``TEXTURE_AMPLITUDE``; every 4x4
block of the grid holds two light and two dark 2x2 cells, so 4x average pooling removes it exactly and the 16x16
low-resolution video (the 4x average pool of the high-resolution one) cannot show it. The same (attributes, seed)
always renders the same video; prompts read "a red square moving left".
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from fvbench.errors import FvbenchError

COLOURS: dict[str, tuple[int, int, int]] = {  # every channel in [50, 205]: the texture never clips
    "red": (205, 55, 55),
    "green": (60, 175, 70),
    "blue": (55, 85, 205),
    "yellow": (205, 195, 60),
    "purple": (150, 60, 195),
    "cyan": (60, 190, 200),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
DIRECTIONS: dict[str, tuple[int, int]] = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}  # (dx, dy)
BACKGROUND: tuple[int, int, int] = (120, 120, 120)
TEXTURE_AMPLITUDE = 40  # uint8 levels added (light cells) or subtracted (dark cells) inside the shape
FRAMES = 8
HIGH_RES = 64
LOW_RES = 16
FACTOR = HIGH_RES // LOW_RES
SHAPE_SIZE = 24  # bounding box side in high-resolution pixels
SPEED = 3  # high-resolution pixels per frame

COLOUR_NAMES = tuple(COLOURS)
DIRECTION_NAMES = tuple(DIRECTIONS)


@dataclass(frozen=True)
class Attributes:
    """What a prompt says: colour, shape and direction (names from COLOURS, SHAPES, DIRECTIONS)."""

    colour: str
    shape: str
    direction: str

    def __post_init__(self) -> None:
        if self.colour not in COLOURS:
            raise FvbenchError(f"unknown colour {self.colour!r}; known: {', '.join(COLOURS)}")
        if self.shape not in SHAPES:
            raise FvbenchError(f"unknown shape {self.shape!r}; known: {', '.join(SHAPES)}")
        if self.direction not in DIRECTIONS:
            raise FvbenchError(f"unknown direction {self.direction!r}; known: {', '.join(DIRECTIONS)}")

    @property
    def prompt(self) -> str:
        return f"a {self.colour} {self.shape} moving {self.direction}"

    @property
    def indices(self) -> tuple[int, int, int]:
        """(colour, shape, direction) indices, 0-based."""
        return COLOUR_NAMES.index(self.colour), SHAPES.index(self.shape), DIRECTION_NAMES.index(self.direction)


def all_attributes() -> list[Attributes]:
    """The 72 combinations, in a fixed order (colour, shape, direction)."""
    return [Attributes(c, s, d) for c, s, d in itertools.product(COLOUR_NAMES, SHAPES, DIRECTION_NAMES)]


# Combinations training never sees: one per (colour, shape) pair, with direction index (colour index + shape index)
# mod 4, so every colour, shape and direction appears both in training and among the held-out set, but never in these
# 18 conjunctions. A model scores on them only if it composes attributes it learnt separately.
def held_out_attributes() -> list[Attributes]:
    """The 18 held-out combinations (a quarter of the world), fixed."""
    return [Attributes(c, s, DIRECTION_NAMES[(ci + si) % len(DIRECTION_NAMES)])
            for ci, c in enumerate(COLOUR_NAMES) for si, s in enumerate(SHAPES)]


def training_attributes() -> list[Attributes]:
    """The 54 combinations training draws from."""
    held = set(held_out_attributes())
    return [a for a in all_attributes() if a not in held]


_WORDS = {**{c: ("colour", c) for c in COLOURS}, **{s: ("shape", s) for s in SHAPES},
          **{d: ("direction", d) for d in DIRECTIONS}}


def parse_words(prompt: str) -> dict[str, str]:
    """The attribute words a prompt contains ({'colour': 'red', ...}); absent attributes are missing keys.

    Used by the label tokenizer (an attribute the prompt does not name becomes the null label) and by the metrics.
    """
    found: dict[str, str] = {}
    for word in re.findall(r"[a-z]+", prompt.lower()):
        if word in _WORDS:
            kind, value = _WORDS[word]
            found.setdefault(kind, value)
    return found


def parse_prompt(prompt: str) -> Attributes:
    """The attributes of a ShapesWorld prompt; a prompt that does not name all three is an error."""
    found = parse_words(prompt)
    missing = [k for k in ("colour", "shape", "direction") if k not in found]
    if missing:
        raise FvbenchError(f"not a ShapesWorld prompt (no {', '.join(missing)}): {prompt!r}")
    return Attributes(found["colour"], found["shape"], found["direction"])


def shape_mask(shape: str, cx: float | np.ndarray, cy: float | np.ndarray, size: int = HIGH_RES,
               box: float = SHAPE_SIZE) -> np.ndarray:
    """Binary (..., size, size) mask of a shape whose bounding box of side ``box`` is centred at (cx, cy).

    Pixel (i, j) covers [j, j+1) x [i, i+1) and is inside when its centre is; cx, cy broadcast (arrays give a stack).
    """
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    dx, dy, r = xs - cx, ys - cy, box / 2.0
    if shape == "circle":
        return dx * dx + dy * dy <= r * r
    if shape == "square":
        return (np.abs(dx) <= r) & (np.abs(dy) <= r)
    if shape == "triangle":  # apex up, base at the bottom of the box
        inside_y = (dy >= -r) & (dy <= r)
        half_width = (dy + r) / 2.0  # 0 at the apex, r at the base
        return inside_y & (np.abs(dx) <= half_width)
    raise FvbenchError(f"unknown shape {shape!r}; known: {', '.join(SHAPES)}")


def checker(size: int = HIGH_RES) -> np.ndarray:
    """+1/-1 checker of 2x2-pixel cells aligned to even coordinates (sums to 0 over every 4x4 block)."""
    ys, xs = np.mgrid[0:size, 0:size]
    return np.where(((xs // 2) + (ys // 2)) % 2 == 0, 1, -1).astype(np.int16)


def start_position(attrs: Attributes, seed: int) -> tuple[int, int]:
    """Integer box centre at frame 0, drawn from ``seed`` so that the shape stays inside the frame throughout."""
    rng = np.random.default_rng([seed, *attrs.indices])
    half = SHAPE_SIZE // 2
    lo, hi = half, HIGH_RES - half  # centre range that keeps the box inside
    travel = SPEED * (FRAMES - 1)
    dx, dy = DIRECTIONS[attrs.direction]

    def axis(d: int) -> int:
        if d > 0:
            return int(rng.integers(lo, hi - travel + 1))
        if d < 0:
            return int(rng.integers(lo + travel, hi + 1))
        return int(rng.integers(lo, hi + 1))

    return axis(dx), axis(dy)


def render(attrs: Attributes, seed: int) -> np.ndarray:
    """The high-resolution video, uint8 (FRAMES, 64, 64, 3)."""
    return render_many([attrs], [seed])[0]


def render_many(attrs: list[Attributes], seeds: list[int]) -> np.ndarray:
    """High-resolution videos of many samples at once, uint8 (B, FRAMES, 64, 64, 3) (vectorised; same pixels as render)."""
    frames = np.arange(FRAMES)
    out = np.empty((len(attrs), FRAMES, HIGH_RES, HIGH_RES, 3), dtype=np.uint8)
    texture = checker()[..., None] * TEXTURE_AMPLITUDE
    background = np.array(BACKGROUND, dtype=np.int16)
    for i, (a, seed) in enumerate(zip(attrs, seeds)):
        x0, y0 = start_position(a, seed)
        dx, dy = DIRECTIONS[a.direction]
        masks = shape_mask(a.shape, (x0 + SPEED * dx * frames)[:, None, None], (y0 + SPEED * dy * frames)[:, None, None])
        colour = np.array(COLOURS[a.colour], dtype=np.int16)
        out[i] = np.where(masks[..., None], colour + texture, background).astype(np.uint8)
    return out


def pool(video: np.ndarray | torch.Tensor, factor: int = FACTOR) -> np.ndarray:
    """``factor`` x average pooling of uint8 (F, H, W, 3) frames, as float64 (exact block means)."""
    v = np.asarray(video, dtype=np.float64)
    f, h, w, c = v.shape
    if h % factor or w % factor:
        raise FvbenchError(f"frames of {h}x{w} cannot be pooled by {factor}")
    return v.reshape(f, h // factor, factor, w // factor, factor, c).mean(axis=(2, 4))


def low_res(video: np.ndarray) -> np.ndarray:
    """The 16x16 low-resolution video of a 64x64 one: 4x average pooling, rounded to uint8."""
    return np.clip(np.rint(pool(video)), 0, 255).astype(np.uint8)


def render_pair(attrs: Attributes, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(high-resolution 64x64, low-resolution 16x16) uint8 videos of one world sample."""
    hr = render(attrs, seed)
    return hr, low_res(hr)


def to_model(video: np.ndarray) -> torch.Tensor:
    """uint8 (F, H, W, 3) -> float (F, 3, H, W) in [-1, 1], the generator's pixel convention."""
    return torch.from_numpy(np.ascontiguousarray(video)).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def upsample(low: torch.Tensor, size: int = HIGH_RES) -> torch.Tensor:
    """Bilinear (antialiased) upsampling of (..., 3, h, w) frames in [-1, 1], exactly as the generator's stage II does."""
    shape = low.shape
    flat = low.reshape(-1, *shape[-3:])
    up = F.interpolate(flat, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return up.reshape(*shape[:-2], size, size)


def batch(attrs: list[Attributes], seeds: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Training tensors: high-res (B, F, 3, 64, 64), low-res (B, F, 3, 16, 16) in [-1, 1], labels (B, 3) long.

    The low-res video is rounded to uint8 like every video a stage hands to the next.
    """
    hr8 = render_many(attrs, seeds)
    b = len(attrs)
    lr8 = low_res(hr8.reshape(b * FRAMES, HIGH_RES, HIGH_RES, 3)).reshape(b, FRAMES, LOW_RES, LOW_RES, 3)
    hr = torch.from_numpy(hr8).permute(0, 1, 4, 2, 3).float() / 127.5 - 1.0
    lr = torch.from_numpy(lr8).permute(0, 1, 4, 2, 3).float() / 127.5 - 1.0
    labels = torch.tensor([a.indices for a in attrs], dtype=torch.long)
    return hr, lr, labels
