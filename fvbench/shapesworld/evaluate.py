"""Evaluation protocols of ShapesWorld through the generator: stage I alone, stage II from the TRUE low-resolution
input (fidelity, consistency, detail against bilinear upsampling), whole cascades and single-stage baselines.

Prompts and seeds come from ``suites/shapesworld.yaml`` with fvbench's ``derive_seed`` (the seeds ``fvbench run``
uses); the ground truth of a unit is the world rendered with the unit's attributes and seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from fvbench.generation.generator import Generator, StageOutput
from fvbench.shapesworld.metrics import attribute_scores, consistency_psnr, detail_ratio, fidelity_psnr, temporal_rms_px
from fvbench.shapesworld.world import Attributes, parse_prompt, render_pair, to_model, upsample


@dataclass(frozen=True)
class EvalUnit:
    """One evaluated video: prompt attributes and seed."""

    attrs: Attributes
    seed: int


def suite_units(name: str = "shapesworld", base_seed: int = 0, samples: int | None = None,
                limit: int | None = None) -> list[EvalUnit]:
    """The suite's (prompt, sample) units with the seeds ``fvbench run`` would use."""
    from fvbench.spec import derive_seed
    from fvbench.suites import load_suite

    suite = load_suite(name).limited(limit)
    n = samples or suite.samples_per_prompt
    return [EvalUnit(parse_prompt(p.text), derive_seed(base_seed, p.id, k)) for p in suite.prompts for k in range(n)]


def truth_output(low: np.ndarray) -> StageOutput:
    """A stand-in for a stage-I output holding the true 16x16 video, to feed stage II."""
    return StageOutput("truth", torch.empty(0), torch.from_numpy(np.ascontiguousarray(low)), {}, 0, 0, None, "", "")


def bilinear(low: np.ndarray) -> np.ndarray:
    """The generator's upsampling of a 16x16 uint8 video to 64x64 (what stage II starts from before degradation)."""
    up = upsample(to_model(low))
    return ((up.permute(0, 2, 3, 1) + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()


def attribute_rates(videos: list[np.ndarray], units: list[EvalUnit]) -> dict[str, float]:
    """Accuracy of colour, shape, direction and all three over videos."""
    rows = [attribute_scores(v, u.attrs) for v, u in zip(videos, units)]
    return {k: float(np.mean([r[k] for r in rows])) for k in ("colour", "shape", "direction", "all_three")}


def upscale_quality(outputs: list[np.ndarray], units: list[EvalUnit]) -> dict[str, float]:
    """Mean fidelity PSNR, consistency PSNR, detail ratio and temporal RMS of 64x64 outputs against the truth."""
    fid, con, det, tmp = [], [], [], []
    for out, u in zip(outputs, units):
        high, low = render_pair(u.attrs, u.seed)
        fid.append(fidelity_psnr(out, high))
        con.append(consistency_psnr(out, low))
        det.append(detail_ratio(out, u.attrs))
        tmp.append(temporal_rms_px(out))
    return {"psnr": float(np.mean(fid)), "consistency_psnr": float(np.mean(con)), "detail": float(np.mean(det)),
            "temporal_rms_px": float(np.nanmean(tmp))}


def stage2_from_truth(gen: Generator, units: list[EvalUnit], nfe: int, stage_index: int = 1) -> list[np.ndarray]:
    """Stage II (``nfe`` evaluations) on the true 16x16 video of every unit."""
    stage = gen.preset.stages[stage_index]
    stage = type(stage)(**{**stage.__dict__, "nfe": nfe})
    outs = []
    for u in units:
        _, low = render_pair(u.attrs, u.seed)
        text, _ = gen.encode_text(u.attrs.prompt)
        outs.append(gen.run_stage(stage_index, text, u.seed, truth_output(low), stage=stage).video.numpy())
    return outs


def generate_all(gen: Generator, units: list[EvalUnit]) -> list[list[np.ndarray]]:
    """Every stage's video for every unit (index [stage][unit])."""
    per_stage: list[list[np.ndarray]] = [[] for _ in gen.preset.stages]
    for u in units:
        result = gen.generate(u.attrs.prompt, u.seed)
        for i, s in enumerate(result.stages):
            per_stage[i].append(s.video.numpy())
    return per_stage
