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


DEFAULT_BENCH = (("cpu-dit-s", 0), ("cpu-dit-m", 0), ("cpu-dit-l", 0), ("cpu-flashvideo-s", 1),
                 ("cpu-flashvideo-m", 1), ("cpu-flashvideo-l", 1), ("cpu-flashvideo-l", 0))


def run_bench(targets=DEFAULT_BENCH, repeats: int = 5, compile: bool = False) -> tuple[float, list[ModelBench]]:
    """GEMM roofline and every target's achieved FLOP/s, in one run."""
    gemm, _ = gemm_throughput()
    return gemm, [bench_stage(get_preset(p), i, repeats, compile) for p, i in targets]
