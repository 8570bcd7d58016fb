"""Roofline benchmark: the machine's fp32 GEMM throughput and each CPU-scale transformer's achieved FLOP/s.

Both are measured in the same run; utilisation = achieved / measured GEMM throughput. Timings exclude warm-up and
report median and min over repeats. FLOPs per forward come from the meta-device count (fvbench.compute.flops).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Callable

import torch

from fvbench.compute.flops import cfg_batch, transformer_forward_flops
from fvbench.generation.models.registry import build_component
from fvbench.generation.presets import Preset, get_preset


@dataclass(frozen=True)
class Timing:
    median: float
    min: float
    repeats: int
    compile_seconds: float | None = None


def time_call(fn: Callable[[], object], warmup: int = 1, repeats: int = 5) -> Timing:
    """Wall time of ``fn`` after ``warmup`` calls: median and min over ``repeats``."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return Timing(statistics.median(times), min(times), repeats)


def gemm_throughput(n: int = 2048, repeats: int = 5) -> tuple[float, Timing]:
    """fp32 GEMM FLOP/s of this machine on an n x n x n matmul (best of repeats; also returns the timing)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    t = time_call(lambda: a @ b, warmup=2, repeats=repeats)
    return 2 * n**3 / t.min, t


@dataclass(frozen=True)
class ModelBench:
    preset: str
    stage: str
    width: int
    layers: int
    tokens: int
    batch: int
    flops: int
    timing: Timing

    @property
    def achieved(self) -> float:
        return self.flops / self.timing.median


def bench_stage(preset: Preset, stage_index: int, repeats: int = 5, compile: bool = False) -> ModelBench:
    """Time one transformer forward of a stage at its CFG batch on random inputs (builtin weights)."""
    stage = preset.stages[stage_index]
    spec = preset.components[stage.transformer]
    model = build_component(spec.type, spec.config, preset.seed)
    cfg = model.config
    fwd = transformer_forward_flops(preset, stage, cfg_batch(stage))
    f = preset.vae_spatial_factor
    b = fwd.batch
    x = torch.randn(b, preset.latent_frames, cfg.in_channels, stage.height // f, stage.width // f)
    enc = torch.randn(b, preset.max_text_length, cfg.text_embed_dim)
    t = torch.full((b,), 500.0)
    kwargs = {}
    if cfg.use_rotary_positional_embeddings:
        from fvbench.generation.generator import rotary_embedding

        p = cfg.patch_size
        kwargs["image_rotary_emb"] = rotary_embedding(stage, model, (x.shape[1], x.shape[3] // p, x.shape[4] // p))
    if hasattr(model.time_embedding, "ref_step"):
        kwargs["timestep_cond"] = torch.tensor([[675.0, float(x.shape[1])]]).expand(b, -1)
    run = model
    compile_s = None
    if compile:
        run = torch.compile(model)
        start = time.perf_counter()
        with torch.no_grad():
            run(hidden_states=x, encoder_hidden_states=enc, timestep=t, return_dict=False, **kwargs)
        compile_s = time.perf_counter() - start

    def call():
        with torch.no_grad():
            run(hidden_states=x, encoder_hidden_states=enc, timestep=t, return_dict=False, **kwargs)

    timing = time_call(call, warmup=1, repeats=repeats)
    timing = Timing(timing.median, timing.min, timing.repeats, compile_s)
    return ModelBench(preset.name, stage.name, cfg.num_attention_heads * cfg.attention_head_dim, cfg.num_layers,
                      fwd.tokens or 0, b, fwd.flops, timing)


def bench_denoise(preset: Preset, stage_index: int, repeats: int = 3, nfe: int = 2) -> ModelBench:
    """Time a stage's whole denoising loop (``nfe`` guided evaluations) through the generator its pipeline names, on
    built-in random weights: achieved = the stage's counted denoise FLOPs / its denoise seconds. Works for any
    registered pipeline (the model families), where :func:`bench_stage` knows CogVideoX's forward signature only."""
    from fvbench.compute.flops import preset_flops
    from fvbench.generation.generator import load_components
    from fvbench.generation.pipelines import make_generator

    stage = preset.stages[stage_index]
    preset = preset.with_overrides({stage.name: {"nfe": nfe}})
    gen = make_generator(preset, load_components(preset), "cpu")
    text, _ = gen.encode_text("a red ball rolls to the left")
    previous = None
    for i in range(stage_index):  # earlier stages once, untimed: this stage starts from their output
        previous = gen.run_stage(i, text, 0, previous)
    flops = preset_flops(preset)["stages"][stage.name]["denoise"]
    times = []
    for _ in range(repeats + 1):  # the first run is a warm-up
        times.append(gen.run_stage(stage_index, text, 0, previous).seconds["denoise"])
    times = times[1:]
    timing = Timing(statistics.median(times), min(times), repeats)
    return ModelBench(preset.name, stage.name, 0, 0, 0, 0, flops, timing)


DEFAULT_BENCH = (("cpu-dit-s", 0), ("cpu-dit-m", 0), ("cpu-dit-l", 0), ("cpu-flashvideo-s", 1),
                 ("cpu-flashvideo-m", 1), ("cpu-flashvideo-l", 1), ("cpu-flashvideo-l", 0))


def family_targets() -> list[tuple[str, int]]:
    """Every stage of the CPU-scale random-weight presets of pipelines other than CogVideoX's (the model families)."""
    from fvbench.generation.presets import all_presets

    return [(n, i) for n, p in all_presets().items() if p.builtin and p.size == "s" and p.pipeline != "cogvideox"
            for i in range(len(p.stages))]


def run_bench(targets=DEFAULT_BENCH, repeats: int = 5, compile: bool = False,
              families: list[tuple[str, int]] | None = None) -> tuple[float, list[ModelBench]]:
    """GEMM roofline and every target's achieved FLOP/s, in one run: CogVideoX-shaped targets by one forward, the
    model families' stages (``families``, default :func:`family_targets`) by their whole denoising loop."""
    gemm, _ = gemm_throughput()
    results = [bench_stage(get_preset(p), i, repeats, compile) for p, i in targets]
    fams = family_targets() if families is None else families
    return gemm, results + [bench_denoise(get_preset(p), i, max(1, min(repeats, 3))) for p, i in fams]
