"""FlashVideo's stage-II DiT: CogVideoX blocks plus two extra time-embedding MLPs.

FlashVideo (arXiv 2502.05179, ``extra_models/dit_res_adapter.py``) adds to the CogVideoX-2B design (a) 3D RoPE
computed from the actual latent grid, (b) an MLP fed the latent degradation step (675) and (c) an MLP fed the
latent frame count (13); both outputs are added to the timestep embedding. Each MLP has the shape of the
timestep MLP (sinusoidal features of width ``inner_dim`` -> ``time_embed_dim`` -> ``time_embed_dim``).

The extra conditioning enters through diffusers' own ``timestep_cond`` argument, as a ``(batch, 2)`` tensor of
``[noise_step, latent_frames]``, so the diffusers forward runs unchanged. With both extras off it is FlashVideo's
stage I (CogVideoX-5B blocks). ``norm_out_eps`` sets the epsilon of the final adaptive norm: FlashVideo's SAT code
(``FinalLayerMixin``) uses 1e-6 where diffusers' CogVideoX uses ``norm_eps`` (1e-5); None keeps diffusers'.
"""

from __future__ import annotations

import torch
from diffusers import CogVideoXTransformer3DModel
from diffusers.configuration_utils import register_to_config
from diffusers.models.embeddings import TimestepEmbedding, get_timestep_embedding


class FlashVideoTimeEmbedding(TimestepEmbedding):
    """Timestep MLP whose output is summed with a degradation-step MLP and a frame-count MLP."""

    def __init__(self, in_channels: int, time_embed_dim: int, act_fn: str, flip_sin_to_cos: bool, freq_shift: float,
                 ref_step: bool, frame_count: bool):
        super().__init__(in_channels, time_embed_dim, act_fn)
        self.in_channels, self.flip_sin_to_cos, self.freq_shift = in_channels, flip_sin_to_cos, freq_shift
        self.ref_step = TimestepEmbedding(in_channels, time_embed_dim, act_fn) if ref_step else None
        self.frame_count = TimestepEmbedding(in_channels, time_embed_dim, act_fn) if frame_count else None

    def _features(self, values: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        f = get_timestep_embedding(values, self.in_channels, flip_sin_to_cos=self.flip_sin_to_cos,
                                   downscale_freq_shift=self.freq_shift)
        return f.to(dtype)

    def forward(self, sample: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        emb = super().forward(sample)
        extras = [m for m in (self.ref_step, self.frame_count) if m is not None]
        if not extras:
            return emb
        if condition is None or condition.ndim != 2 or condition.shape[1] != 2:
            raise ValueError("FlashVideo stage II needs timestep_cond = (batch, 2) tensor of [noise_step, latent_frames]")
        if self.ref_step is not None:
            emb = emb + self.ref_step(self._features(condition[:, 0], sample.dtype))
        if self.frame_count is not None:
            emb = emb + self.frame_count(self._features(condition[:, 1], sample.dtype))
        return emb


class FlashVideoTransformer3DModel(CogVideoXTransformer3DModel):
    """CogVideoX transformer with FlashVideo's degradation-step and frame-count embeddings (stage II)."""

    @register_to_config
    def __init__(
        self,
        num_attention_heads: int = 30,
        attention_head_dim: int = 64,
        in_channels: int = 16,
        out_channels: int | None = 16,
        flip_sin_to_cos: bool = True,
        freq_shift: int = 0,
        time_embed_dim: int = 512,
        text_embed_dim: int = 4096,
        num_layers: int = 30,
        dropout: float = 0.0,
        attention_bias: bool = True,
        sample_width: int = 240,
        sample_height: int = 134,
        sample_frames: int = 49,
        patch_size: int = 2,
        temporal_compression_ratio: int = 4,
        max_text_seq_length: int = 226,
        activation_fn: str = "gelu-approximate",
        timestep_activation_fn: str = "silu",
        norm_elementwise_affine: bool = True,
        norm_eps: float = 1e-5,
        spatial_interpolation_scale: float = 1.875,
        temporal_interpolation_scale: float = 1.0,
        use_rotary_positional_embeddings: bool = True,
        use_learned_positional_embeddings: bool = False,
        patch_bias: bool = True,
        patch_size_t: int | None = None,
        ofs_embed_dim: int | None = None,
        ref_step_embedding: bool = True,
        frame_count_embedding: bool = True,
        norm_out_eps: float | None = None,
    ):
        super().__init__(
            num_attention_heads=num_attention_heads, attention_head_dim=attention_head_dim, in_channels=in_channels,
            out_channels=out_channels, flip_sin_to_cos=flip_sin_to_cos, freq_shift=freq_shift,
            time_embed_dim=time_embed_dim, text_embed_dim=text_embed_dim, num_layers=num_layers, dropout=dropout,
            attention_bias=attention_bias, sample_width=sample_width, sample_height=sample_height,
            sample_frames=sample_frames, patch_size=patch_size, temporal_compression_ratio=temporal_compression_ratio,
            max_text_seq_length=max_text_seq_length, activation_fn=activation_fn,
            timestep_activation_fn=timestep_activation_fn, norm_elementwise_affine=norm_elementwise_affine,
            norm_eps=norm_eps, spatial_interpolation_scale=spatial_interpolation_scale,
            temporal_interpolation_scale=temporal_interpolation_scale,
            use_rotary_positional_embeddings=use_rotary_positional_embeddings,
            use_learned_positional_embeddings=use_learned_positional_embeddings, patch_bias=patch_bias,
            patch_size_t=patch_size_t, ofs_embed_dim=ofs_embed_dim,
        )
        inner_dim = num_attention_heads * attention_head_dim
        if norm_out_eps is not None:  # SAT's FinalLayerMixin normalises with eps 1e-6; diffusers' norm_out uses norm_eps
            self.norm_out.norm.eps = norm_out_eps
        self.time_embedding = FlashVideoTimeEmbedding(
            inner_dim, time_embed_dim, timestep_activation_fn, flip_sin_to_cos, freq_shift,
            ref_step=ref_step_embedding, frame_count=frame_count_embedding,
        )
