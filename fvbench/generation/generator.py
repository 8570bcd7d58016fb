"""The generator: (prompt, seed) -> video, one stage after another, with what each stage cost.

A stage's output (latents and the decoded video) is available as soon as the stage ends: the stage-I preview is a
first-class product with its own latency. ``run_stage`` is public so that a runner can compute a stage-I result
once and feed several stage-II variants from it (stage-prefix sharing).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from diffusers.models.embeddings import get_3d_rotary_pos_embed
from diffusers.pipelines.cogvideo.pipeline_cogvideox import get_resize_crop_region_for_grid

from fvbench.compute.timing import ComponentTimer, PeakMemory
from fvbench.errors import FvbenchError
from fvbench.generation.denoiser import Denoiser, TextConditioning
from fvbench.generation.models.registry import build_component, component_type, load_component
from fvbench.generation.noise import NoiseSource, SeededNoise, generator_of
from fvbench.generation.onednn import use_onednn_conv3d
from fvbench.generation.presets import Preset, StageConfig
from fvbench.generation.sharing import StageKey, init_key, keeps_pixels, output_keys
from fvbench.generation.samplers.cogvideox import sample_cogvideox
from fvbench.generation.samplers.flow import degrade, sample_flow
from fvbench.generation.samplers.sat import sample_sat_dpm
from fvbench.generation.vae_slices import decode_width_split, encode_in_chunks

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class Components:
    """Loaded modules of a preset: tokenizer, text encoder, VAE and the transformers by component name."""

    tokenizer: Any
    text_encoder: torch.nn.Module
    vae: torch.nn.Module
    transformers: dict[str, torch.nn.Module]
    modules: dict[str, Any] = field(default_factory=dict)  # every component by role (a family's extra encoders)

    def parameter_counts(self) -> dict[str, int]:
        """Parameters per module (text encoders, vae, and each transformer; tokenizers have none)."""
        mods = {k: m for k, m in self.modules.items() if isinstance(m, torch.nn.Module)} or {
            "text_encoder": self.text_encoder, "vae": self.vae}
        mods.update(self.transformers)
        return {k: sum(p.numel() for p in m.parameters()) for k, m in mods.items()}


def load_components(preset: Preset, weights_dir: str | Path | None = None, device: str | torch.device = "cpu") -> Components:
    """Build (``weights: builtin``) or load from local folders every component a preset names."""
    device = torch.device(device)
    dtype = _DTYPES[preset.dtype] if device.type != "cpu" else torch.float32
    mods: dict[str, Any] = {}
    root = None if preset.builtin and weights_dir is None else preset.weights_dir(weights_dir)
    if root is not None and not root.is_dir():
        raise FvbenchError(f"preset {preset.name!r}: weights folder {root} does not exist "
                           f"(pass --weights DIR or set FVBENCH_WEIGHTS; see README 'Real models')")
    for role, spec in preset.components.items():
        if root is None or component_type(spec.type).weightless:
            mods[role] = build_component(spec.type, spec.config, preset.seed)
        else:
            mods[role] = load_component(spec.type, root / (spec.path or role), dtype, preset.name, role)
        if isinstance(mods[role], torch.nn.Module):
            mods[role] = mods[role].to(device)
            use_onednn_conv3d(mods[role])  # CPU only; batch-1 Conv3d would otherwise run PyTorch's slow_conv3d
    if preset.vae_tiling:
        mods["vae"].enable_tiling()
    transformers = {s.transformer: mods[s.transformer] for s in preset.stages}
    return Components(mods["tokenizer"], mods["text_encoder"], mods["vae"], transformers, mods)


@dataclass
class StageOutput:
    """What one stage produced and what it cost.

    ``video`` is uint8 (F, H, W, 3), the product a user sees; ``seconds`` holds wall time per component of this
    stage (upsample, vae_encode, denoise, vae_decode); ``nfe`` counts transformer calls and ``rows`` the samples
    they processed (2 per call with CFG). ``pixels`` is the unrounded video, float (F, H, W, 3) in [0, 255], kept when
    the next stage upsamples from floats (FlashVideo's release) or the generator keeps pixels; ``steps`` holds one
    (model timestep, guidance scale) per transformer call.
    """

    name: str
    latents: torch.Tensor
    video: torch.Tensor
    seconds: dict[str, float]
    nfe: int
    rows: int
    peak_memory_bytes: int | None
    memory_kind: str
    memory_scope: str
    pixels: torch.Tensor | None = None
    steps: list[tuple[float, float]] = field(default_factory=list)
    # solver state a following stage continues from (an expert split continues one scheduler's trajectory); a
    # stage that reads it must not change it, since one cached output feeds every later variant
    state: Any = None

    @property
    def total_seconds(self) -> float:
        return sum(self.seconds.values())


@dataclass
class GenerationResult:
    """A whole cascade run: text encoding time, each stage's output, and when each stage's video was ready."""

    prompt: str
    seed: int
    text_seconds: float
    stages: list[StageOutput]
    ready_at: list[float] = field(default_factory=list)  # seconds from start to each stage's decoded video

    @property
    def video(self) -> torch.Tensor:
        return self.stages[-1].video


def stage_seed(seed: int, stage_index: int) -> int:
    """Per-stage RNG seed, so a stage's noise never depends on how much noise an earlier stage drew."""
    return (seed + stage_index * 0x9E3779B97F4A7C15) % (2**63)


def to_uint8(pixels: torch.Tensor) -> torch.Tensor:
    """VAE output (1, 3, F, H, W) in [-1, 1] -> uint8 (F, H, W, 3)."""
    x = (pixels[0].float() / 2 + 0.5).clamp(0, 1)
    return (x * 255).round().to(torch.uint8).permute(1, 2, 3, 0).contiguous().cpu()


def from_uint8(video: torch.Tensor) -> torch.Tensor:
    """uint8 (F, H, W, 3) -> float (F, 3, H, W) in [-1, 1]."""
    return video.permute(0, 3, 1, 2).float() / 255.0 * 2.0 - 1.0


def to_pixels(decoded: torch.Tensor) -> torch.Tensor:
    """VAE output (1, 3, F, H, W) -> unrounded float (F, H, W, 3) in [0, 255], as FlashVideo's release keeps it."""
    x = torch.clamp((decoded.float() + 1.0) / 2.0, min=0.0, max=1.0).cpu()
    return (x * 255)[0].permute(1, 2, 3, 0)


def from_pixels(pixels: torch.Tensor) -> torch.Tensor:
    """Float (F, H, W, 3) in [0, 255] -> float (F, 3, H, W) in [-1, 1], the release's stage-II input."""
    return ((pixels / 255.0 - 0.5) / 0.5).permute(0, 3, 1, 2)


def rotary_embedding(stage: StageConfig, transformer: torch.nn.Module, grid: tuple[int, int, int],
                     device: torch.device | str = "cpu"):
    """3D RoPE (cos, sin) for a (frames, height, width) token grid, or None for a model without rotary embeddings.

    ``rope: grid`` is FlashVideo's: positions 0..n-1 of the actual latent grid. ``rope: crop`` is diffusers'
    CogVideoX 1.0: the grid resized and cropped against the model's training base size.
    """
    cfg = transformer.config
    if not cfg.use_rotary_positional_embeddings:
        return None
    t, h, w = grid
    if stage.rope == "grid":
        crops = ((0, 0), (h, w))
    else:
        crops = get_resize_crop_region_for_grid((h, w), cfg.sample_width // cfg.patch_size,
                                                cfg.sample_height // cfg.patch_size)
    return get_3d_rotary_pos_embed(cfg.attention_head_dim, crops, (h, w), t, device=device)


class Generator:
    """Runs a preset's stages on loaded components. Deterministic for a given (preset, seed) on CPU."""

    def __init__(self, preset: Preset, components: Components, device: str | torch.device = "cpu",
                 keep_pixels: bool = False):
        self.preset = preset
        self.components = components
        self.device = torch.device(device)
        self.keep_pixels = keep_pixels  # keep every stage's unrounded float video in StageOutput.pixels
        # on_step(stage_index, step, latents): latents after each sampler step (SAT and flow solvers), for tests
        self.on_step: Callable[[int, int, torch.Tensor], None] | None = None

    @classmethod
    def from_preset(cls, preset: Preset, weights_dir: str | Path | None = None,
                    device: str | torch.device = "cpu") -> "Generator":
        """Load the preset's components and make the generator its pipeline names (a subclass for a model family)."""
        from fvbench.generation.pipelines import make_generator

        return make_generator(preset, load_components(preset, weights_dir, device), device)

    # -- text ------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def _embed(self, text: str) -> torch.Tensor:
        tok = self.components.tokenizer(
            [text], padding="max_length", max_length=self.preset.max_text_length, truncation=True,
            add_special_tokens=True, return_tensors="pt",
        )
        return self.components.text_encoder(tok.input_ids.to(self.device))[0].float()

    def encode_text(self, prompt: str) -> tuple[TextConditioning, float]:
        """Prompt embeddings (conditional and unconditional) and the seconds it took.

        A stage with a ``prompt_prefix`` (FlashVideo's stage II: ``'medium motion,' + prompt``) gets its own
        embedding, encoded here once per prompt and shared by every variant of the stage.
        """
        timer = ComponentTimer(self.device)
        with timer.time("text_encode"):
            cond = self._embed(prompt)
            uncond = torch.zeros_like(cond) if self.preset.uncond == "zeros" else self._embed("")
            text = TextConditioning(cond, uncond)
            for prefix in dict.fromkeys(s.prompt_prefix for s in self.preset.stages if s.prompt_prefix):
                text.prefixed[prefix] = TextConditioning(self._embed(prefix + prompt), uncond)
        return text, timer.seconds["text_encode"]

    def _stage_text(self, text: TextConditioning, stage: StageConfig) -> TextConditioning:
        try:
            return text.for_prefix(stage.prompt_prefix)
        except KeyError:
            raise FvbenchError(f"stage {stage.name!r}: prompt prefix {stage.prompt_prefix!r} was not encoded; "
                               f"encode_text encodes the prefixes of the preset's own stages") from None

    # -- stages ----------------------------------------------------------------------------------------------
    def _latent_scale(self, stage: StageConfig) -> float:
        return stage.latent_scale if stage.latent_scale is not None else float(self.components.vae.config.scaling_factor)

    def _rotary(self, stage: StageConfig, transformer: torch.nn.Module, grid: tuple[int, int, int]):
        return rotary_embedding(stage, transformer, grid, self.device)

    def _vae_dtype(self) -> torch.dtype:
        param = next(self.components.vae.parameters(), None)  # a pixel-space identity VAE has none
        return torch.float32 if param is None else param.dtype

    def _check_stage(self, stage: StageConfig) -> None:
        factor = self.preset.spatial_factor(stage)
        if stage.height % factor or stage.width % factor:
            raise FvbenchError(f"stage {stage.name!r}: {stage.height}x{stage.width} is not divisible by {factor}")

    @dataclass
    class FlowInit:
        """A flow stage's starting latent z0 and what preparing it cost (upsample, vae_encode seconds)."""

        z0: torch.Tensor
        seconds: dict[str, float]

    def _shape(self, stage: StageConfig) -> tuple[int, int, int, int, int]:
        transformer = self.components.transformers[stage.transformer]
        vf = self.preset.vae_spatial_factor
        return (1, self.preset.latent_frames, transformer.config.in_channels, stage.height // vf, stage.width // vf)

    def _model_dtype(self, stage: StageConfig) -> torch.dtype:
        return next(self.components.transformers[stage.transformer].parameters()).dtype

    def _grid_dtype(self, stage: StageConfig) -> torch.dtype | None:
        if stage.time_grid_dtype == "float64":
            return None  # fvbench's float64 grid (the sampler's default path)
        if stage.time_grid_dtype == "model":
            return self._model_dtype(stage)
        return getattr(torch, stage.time_grid_dtype)

    def flow_init_key(self, index: int, stage: StageConfig | None = None) -> tuple:
        """Everything :meth:`flow_init` reads besides the previous stage's output and the seed.

        Two variants of a stage with equal keys (and the same previous output and seed) get the same z0, so a runner
        may compute it once for all of them. Keep this next to :meth:`flow_init`: a field it starts to read belongs here.
        """
        stage = stage or self.preset.stages[index]
        return (index, stage.init, stage.height, stage.width, stage.noise_step, self._latent_scale(stage),
                stage.upsample_input, self.preset.vae_encode_chunks, self._shape(stage))

    def stage_keys(self, prompt: str, seed: int) -> tuple[StageKey, ...]:
        """Per stage, the key of its output and (flow stages) of its z0: equal keys, bitwise-equal results.

        A runner reuses a cached output or z0 by key, without knowing solvers or stage positions.
        """
        outputs = output_keys(self.preset, prompt, seed)
        return tuple(StageKey(out, init_key(outputs[i - 1] if i else None, self.flow_init_key(i))
                              if stage.solver == "flow-euler" else None)
                     for i, (out, stage) in enumerate(zip(outputs, self.preset.stages)))

    @torch.no_grad()
    def flow_init(self, index: int, seed: int, previous: StageOutput | None = None,
                  stage: StageConfig | None = None, noise: NoiseSource | None = None) -> "Generator.FlowInit":
        """z0 of a flow stage: the degraded, upsampled previous video (FlashVideo) or pure noise (vanilla cascade).

        It depends only on (previous video, seed, stage index, resolution, noise step, latent scale), and the flow
        sampler draws no randomness after it, so one z0 can feed every NFE/CFG variant of the stage bitwise-exactly.
        ``noise`` replaces the stage's seeded draws (VAE posterior sample(s), then the degradation eps).
        """
        stage = stage or self.preset.stages[index]
        noise = noise or SeededNoise(stage_seed(seed, index))
        timer = ComponentTimer(self.device)
        if stage.init != "upsample":
            return Generator.FlowInit(noise.randn(self._shape(stage)).to(self.device), {})
        if previous is None:
            raise FvbenchError(f"stage {stage.name!r} upsamples the previous stage, but there is none")
        vae = self.components.vae
        with timer.time("upsample"):
            if stage.upsample_input == "float":
                if previous.pixels is None:
                    raise FvbenchError(f"stage {stage.name!r} upsamples float frames, but stage {previous.name!r} "
                                       f"kept none")
                frames = from_pixels(previous.pixels).to(self.device)
            else:
                frames = from_uint8(previous.video).to(self.device)
            up = F.interpolate(frames, size=(stage.height, stage.width), mode="bilinear", align_corners=False,
                               antialias=True)
            up = up.permute(1, 0, 2, 3).unsqueeze(0).to(self._vae_dtype())  # (1, 3, F, H, W)
        with timer.time("vae_encode"):
            if self.preset.vae_encode_chunks:
                z = encode_in_chunks(vae, up, self.preset.vae_encode_chunks, noise)
            else:
                post = vae.encode(up).latent_dist
                gen = getattr(noise, "generator", None)
                if gen is not None or not hasattr(post, "mean"):  # seeded (as always), or a VAE that draws nothing
                    z = post.sample(generator=gen)
                else:  # replayed noise: the posterior draw comes from the noise source
                    z = post.mean + post.std * noise.randn(post.mean.shape, dtype=post.mean.dtype).to(post.mean.device)
            z = z * self._latent_scale(stage)
            z = z.permute(0, 2, 1, 3, 4).float()  # (1, F, C, h, w)
        return Generator.FlowInit(degrade(z, stage.noise_step, noise=noise).to(self.device), dict(timer.seconds))

    def _step_hook(self, index: int) -> Callable[[int, torch.Tensor], None] | None:
        hook = self.on_step
        return None if hook is None else (lambda step, x: hook(index, step, x))

    def _keeps_pixels(self, index: int) -> bool:
        return self.keep_pixels or keeps_pixels(self.preset, index)

    @torch.no_grad()
    def run_stage(self, index: int, text: TextConditioning, seed: int, previous: StageOutput | None = None,
                  stage: StageConfig | None = None, init: "Generator.FlowInit | None" = None,
                  noise: NoiseSource | None = None) -> StageOutput:
        """Run stage ``index`` of the preset (or ``stage`` in its place) and decode its video.

        ``init`` (flow stages only) is a z0 prepared by :meth:`flow_init`; its preparation time is reported as this
        stage's upsample/vae_encode time. ``noise`` replaces the stage's seeded random draws (a differential test
        replays another implementation's); by default each stage draws from ``stage_seed(seed, index)``.
        """
        stage = stage or self.preset.stages[index]
        self._check_stage(stage)
        transformer = self.components.transformers[stage.transformer]
        text = self._stage_text(text, stage)
        timer = ComponentTimer(self.device)
        scale = self._latent_scale(stage)
        shape = self._shape(stage)
        p = transformer.config.patch_size
        rotary = self._rotary(stage, transformer, (shape[1], shape[3] // p, shape[4] // p))
        steps: list[tuple[float, float]] = []
        with PeakMemory(self.device) as mem:
            if stage.solver == "flow-euler":
                init = init or self.flow_init(index, seed, previous, stage, noise)
                for k, v in init.seconds.items():
                    timer.seconds[k] += v
                cond = torch.tensor([[float(stage.noise_step), float(shape[1])]])
                uses_cond = hasattr(transformer.time_embedding, "ref_step")
                den = Denoiser(transformer, text, stage.cfg > 1.0, rotary, cond if uses_cond else None)
                with timer.time("denoise"):
                    latents = sample_flow(den, init.z0, stage.nfe, stage.cfg, stage.shift, self._grid_dtype(stage),
                                          steps, self._step_hook(index))
            else:
                if init is not None:
                    raise ValueError("a prepared init is only for flow stages")
                noise = noise or SeededNoise(stage_seed(seed, index))
                den = Denoiser(transformer, text, stage.cfg > 1.0, rotary)
                with timer.time("denoise"):
                    if stage.solver == "sat-dpm++2m":
                        latents = sample_sat_dpm(den, noise, shape, stage.nfe, stage.cfg, stage.cfg_schedule, steps,
                                                 self._step_hook(index))
                    else:
                        start = noise.randn(shape).to(self.device)
                        latents = sample_cogvideox(den, start, stage.solver, stage.nfe, stage.cfg, stage.cfg_schedule,
                                                   stage.snr_shift_scale, generator_of(noise, stage.solver), steps)
            with timer.time("vae_decode"):
                z = (latents.permute(0, 2, 1, 3, 4) / scale).to(self._vae_dtype())
                decoded = decode_width_split(self.components.vae, z, stage.decode_width_splits,
                                             self.preset.vae_spatial_factor)
                video = to_uint8(decoded)
                pixels = to_pixels(decoded) if self._keeps_pixels(index) else None
        return StageOutput(stage.name, latents.cpu(), video, dict(timer.seconds), den.nfe, den.rows,
                           mem.bytes, mem.kind, mem.scope, pixels, steps)

    def generate(self, prompt: str, seed: int,
                 on_stage_end: Callable[[int, StageOutput, float], None] | None = None,
                 noise: Sequence[NoiseSource] | None = None) -> GenerationResult:
        """Run every stage; ``on_stage_end(index, output, seconds_since_start)`` fires as each stage's video is ready.

        ``noise``, if given, holds one noise source per stage (replayed draws); by default each stage is seeded.
        """
        if noise is not None and len(noise) != len(self.preset.stages):
            raise FvbenchError(f"noise: {len(noise)} sources given for {len(self.preset.stages)} stages")
        start = time.perf_counter()
        text, text_s = self.encode_text(prompt)
        result = GenerationResult(prompt, seed, text_s, [])
        prev = None
        for i in range(len(self.preset.stages)):
            prev = self.run_stage(i, text, seed, prev, noise=None if noise is None else noise[i])
            result.stages.append(prev)
            result.ready_at.append(time.perf_counter() - start)
            if on_stage_end is not None:
                on_stage_end(i, prev, result.ready_at[-1])
        return result
