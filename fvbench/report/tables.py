"""Per-configuration tables: means with 95% bootstrap intervals over prompts, costs, and the best split under a budget."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

COST_COLUMNS = {"flops_total": "FLOPs/video", "total_s": "s/video (all stages)", "preview_s": "s to preview"}


ROMAN = ("I", "II", "III", "IV", "V", "VI", "VII", "VIII")
STAGE_PARTS = (("upsample_s", "upsample"), ("vae_encode_s", "VAE encode"), ("denoise_s", "loop"),
               ("vae_decode_s", "decode"))


def stage_name(i: int) -> str:
    """How the report names stage ``i`` (1-based): "stage I", "stage II", ..."""
    return f"stage {ROMAN[i - 1] if 0 < i <= len(ROMAN) else i}"


def stage_numbers(columns, name: str) -> list[int]:
    """The stages i that have an ``s{i}_<name>`` column among ``columns``, ascending."""
    found = (re.fullmatch(rf"s([1-9][0-9]*)_{re.escape(name)}", str(c)) for c in columns)
    return sorted(int(m.group(1)) for m in found if m)


def time_parts(done: pd.DataFrame) -> list[tuple[str, str]]:
    """(column, label) of the timed parts a run has: text encoding, then each stage's upsample, VAE encode, denoising
    loop and decode, for every stage in the frame (any depth), leaving out parts no video has."""
    stages = stage_numbers(done.columns, "denoise_s")
    parts = [("text_encode_s", "text encode")] + [(f"s{i}_{k}", f"{stage_name(i)} {label}") for i in stages
                                                  for k, label in STAGE_PARTS]
    return [(c, label) for c, label in parts if c in done and done[c].notna().any()]


def metric_columns(df: pd.DataFrame) -> list[str]:
    return [c for c in df.columns if c.startswith("metric:") and df[c].notna().any()]


def bootstrap_ci(per_prompt: np.ndarray, n_boot: int = 1000, seed: int = 0) -> tuple[float, float]:
    """95% percentile bootstrap interval of the mean of ``per_prompt`` (per-prompt means here; paired unit
    differences in :mod:`fvbench.report.answer`), resampled with replacement in one vectorised draw."""
    x = per_prompt[np.isfinite(per_prompt)]
    if len(x) < 2:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = rng.choice(x, size=(n_boot, len(x)), replace=True).mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def _first(values: pd.Series) -> int | None:
    """A per-configuration constant (NFE, parameters) from its first row that has it; None when none has (a stage
    the preset lacks, or a value lost to a hand-edited store)."""
    known = values.dropna()
    return int(known.iloc[0]) if len(known) else None


def config_table(df: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration: identity (NFE of every stage), n, costs, and each metric's mean [95% CI over
    prompts]; params = transformer parameters of all stages."""
    done = df[df.status == "done"]
    stages = stage_numbers(done.columns, "nfe")
    rows = []
    for config, g in done.groupby("config", sort=False):
        later = sum(_first(g[f"s{i}_params"]) or 0 for i in stages if i > 1)
        row = {"config": config, "preset": g.preset.iloc[0], "family": g.family.iloc[0], "size": g["size"].iloc[0],
               "stage1_nfe": _first(g.s1_nfe), "stage2_nfe": _first(g.s2_nfe),
               **{f"stage{i}_nfe": _first(g[f"s{i}_nfe"]) for i in stages if i > 2},
               "n": int(len(g)), "prompts": int(g.prompt_id.nunique()),
               "params": _first(g.s1_params + later),
               "flops": float(g.flops_total.mean()), "total_s": float(g.total_s.mean()),
               "preview_s": float(g.preview_s.mean()) if g.preview_s.notna().any() else float("nan")}
        for c in metric_columns(done):
            per_prompt = g.groupby("prompt_id")[c].mean().to_numpy(dtype=float)
            lo, hi = bootstrap_ci(per_prompt)
            name = c.removeprefix("metric:")
            row[name] = float(np.nanmean(per_prompt)) if np.isfinite(per_prompt).any() else float("nan")
            row[f"{name} ci95"] = (lo, hi)
        rows.append(row)
    return pd.DataFrame(rows)


def pareto_front(x: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Indices of points not dominated (no other point has lower-or-equal cost and a better-or-equal score; scores are
    higher-is-better: :meth:`fvbench.metrics.semantics.Semantics.score`)."""
    order = np.argsort(x, kind="stable")
    best, front = -np.inf, []
    for i in order:
        v = score[i]
        if np.isfinite(v) and v > best:
            front.append(i)
            best = v
    return np.array(front, dtype=int)
