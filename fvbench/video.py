"""Writing and reading videos (mp4 via imageio-ffmpeg, which ships its own ffmpeg)."""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

import numpy as np
import torch

from fvbench.runfiles import atomic_output


def write_mp4(video: torch.Tensor | np.ndarray, path: str | Path, fps: int = 8) -> Path:
    """Write uint8 frames (F, H, W, 3) to ``path`` atomically (temp file in the same folder, then rename)."""
    import imageio.v2 as imageio

    path = Path(path)
    frames = video.numpy() if isinstance(video, torch.Tensor) else np.asarray(video)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected uint8 frames (F, H, W, 3), got {frames.dtype} {frames.shape}")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as tmp:  # removed on failure or Ctrl-C; never writes through a link at `path`
        # yuv420p plays everywhere; macro_block_size=1 avoids silent resizing (sizes here are multiples of 16).
        with imageio.get_writer(str(tmp), fps=fps, codec="libx264", macro_block_size=1, quality=None,
                                pixelformat="yuv420p", ffmpeg_log_level="error", ffmpeg_params=["-crf", "12"]) as w:
            for f in frames:
                w.append_data(f)
    return path


def read_mp4(path: str | Path) -> np.ndarray:
    """Read an mp4 back as uint8 (F, H, W, 3)."""
    import imageio.v2 as imageio

    with imageio.get_reader(str(path)) as reader:  # iterate: its len() is inf, so list(reader) would not end well
        return np.stack([frame for frame in reader])


def encode_roundtrip(video: torch.Tensor | np.ndarray) -> np.ndarray:
    """The frames as they come back from the mp4 :func:`write_mp4` would write (what VBench would read)."""
    with tempfile.TemporaryDirectory() as tmp:
        return read_mp4(write_mp4(video, Path(tmp) / "video.mp4"))


def video_sha256(video: torch.Tensor | np.ndarray) -> str:
    """Checksum of a video's raw uint8 frames (what determinism tests and `fvbench check` compare)."""
    frames = video.numpy() if isinstance(video, torch.Tensor) else np.asarray(video)
    return hashlib.sha256(np.ascontiguousarray(frames).tobytes()).hexdigest()
