"""FlashVideo's release VAE passes: frame-chunked encode and width-split decode, instead of diffusers' tiling.

The release (``utils.py``) encodes the upsampled 49 frames in chunks of 17, 16, 16 frames, carrying the causal
convolution cache from chunk to chunk and sampling each chunk's posterior on its own; it decodes stage I whole (the
VAE's own 2-latent-frame batches) and stage II in two width halves, each widened by 16 latent columns into its
neighbour, the overlap cropped after decoding. The CogVideoX VAE's group norms see only the frames/columns of their
chunk, so these splits, not diffusers' tiles or frame batches, decide the pixels.
"""

from __future__ import annotations

import torch
from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution

from fvbench.errors import FvbenchError
from fvbench.generation.noise import NoiseSource

RELEASE_DECODE_OVERLAP = 16  # latent columns each width slice reaches into its neighbour (utils.save_mem_decode)


def encode_chunk_moments(vae: torch.nn.Module, pixels: torch.Tensor, chunks: tuple[int, ...]) -> list[torch.Tensor]:
    """Posterior parameters (mean and log-variance, 1 x 2C x t x h x w) of each chunk of ``chunks`` frames of
    ``pixels`` (1, 3, F, H, W), the causal convolution cache carried from one chunk to the next."""
    if sum(chunks) != pixels.shape[2]:
        raise FvbenchError(f"VAE encode chunks {list(chunks)} sum to {sum(chunks)} frames, the video has "
                           f"{pixels.shape[2]}")
    cache = None
    out = []
    for piece in torch.split(pixels, list(chunks), dim=2):
        h, cache = vae.encoder(piece, conv_cache=cache)
        out.append(vae.quant_conv(h) if vae.quant_conv is not None else h)
    return out


def encode_in_chunks(vae: torch.nn.Module, pixels: torch.Tensor, chunks: tuple[int, ...],
                     noise: NoiseSource) -> torch.Tensor:
    """Sampled latent (1, C, T, h, w) of ``pixels`` (1, 3, F, H, W), encoded ``chunks`` frames at a time.

    One posterior draw per chunk, in chunk order (as the release's regularizer samples per encode call).
    """
    out = []
    for h in encode_chunk_moments(vae, pixels, chunks):
        post = DiagonalGaussianDistribution(h)
        out.append(post.mean + post.std * noise.randn(post.mean.shape, dtype=post.mean.dtype).to(h.device))
    return torch.cat(out, dim=2)


def width_slices(width: int, splits: int, overlap: int = RELEASE_DECODE_OVERLAP) -> list[tuple[int, int, int, int]]:
    """(lo, start, end, hi) latent columns of each width slice: [start, end) is kept, [lo, hi) is decoded."""
    out = []
    for k in range(splits):
        start, end = k * width // splits, (k + 1) * width // splits
        lo = start - overlap if splits > 1 and start - overlap >= 0 else start
        hi = end + overlap if splits > 1 and end + overlap <= width else end
        out.append((lo, start, end, hi))
    return out


def decode_width_split(vae: torch.nn.Module, latents: torch.Tensor, splits: int, factor: int,
                       overlap: int = RELEASE_DECODE_OVERLAP) -> torch.Tensor:
    """Decode (1, C, T, h, w) in ``splits`` width slices, each extended by ``overlap`` latent columns where the
    latent has them, the extension cropped; returns the decoder output (1, 3, F, H, W), unclamped."""
    if splits == 1:
        return vae.decode(latents).sample
    pieces = []
    for lo, start, end, hi in width_slices(latents.shape[-1], splits, overlap):
        piece = vae.decode(latents[..., lo:hi].contiguous()).sample
        pieces.append(piece[..., (start - lo) * factor: piece.shape[-1] - (hi - end) * factor])
    return torch.cat(pieces, dim=-1)
