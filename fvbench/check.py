"""The regression gate: compare a run with a committed baseline.

Checked, per configuration: exact FLOPs per video and executed NFE; output checksums of the deterministic
CPU-scale presets (only when the hardware/software fingerprint matches the baseline's, since thread counts and
instruction sets may change the last bits); metric means within stated tolerances; and speed as ratios measured
inside the run (each cascade's mean denoising time per video / that of the most expensive single-stage configuration
of the same size; VAE time is left out, as in the paper's timings),
never absolute seconds.

Exit codes of ``fvbench check``: 0 every check passed (or was skipped), 1 a regression, 2 bad input (an unreadable
run or a baseline of the wrong shape: missing or mistyped keys, unknown keys, negative tolerances), so CI can tell
"the code regressed" from "the gate itself is broken".
"""

from __future__ import annotations

import dataclasses
import json
import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from fvbench.dataio import from_dict, load_data
from fvbench.errors import FvbenchError
from fvbench.runfiles import atomic_output, write_atomic

DEFAULT_TOLERANCES = {"metric_rel": 0.02, "metric_abs": 1e-6, "speed_ratio_rel": 0.5}


def _finite(where: str, value: float, minimum: float = 0.0) -> None:
    if not math.isfinite(value) or value < minimum:
        raise ValueError(f"{where} must be a finite number >= {minimum:g}, got {value!r}")


@dataclass(frozen=True)
class Tolerances:
    """Relative and absolute metric tolerances and the relative speed-ratio tolerance (all >= 0)."""

    metric_rel: float = DEFAULT_TOLERANCES["metric_rel"]
    metric_abs: float = DEFAULT_TOLERANCES["metric_abs"]
    speed_ratio_rel: float = DEFAULT_TOLERANCES["speed_ratio_rel"]

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            _finite(f.name, getattr(self, f.name))


@dataclass(frozen=True)
class BaselineConfig:
    """What a baseline holds for one configuration."""

    flops_total: int
    nfe_executed: tuple[int, ...]
    videos: int = 0
    checksums: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.flops_total < 0 or self.videos < 0:
            raise ValueError("flops_total and videos must be >= 0")
        if not self.nfe_executed or any(n <= 0 for n in self.nfe_executed):
            raise ValueError(f"nfe_executed must list one positive NFE per stage, got {list(self.nfe_executed)}")
        for name, value in self.metrics.items():
            _finite(f"metric {name}", value, -math.inf)


@dataclass(frozen=True)
class Baseline:
    """Schema of a baseline file (reports/*.yaml); anything else in it is an error."""

    configs: dict[str, BaselineConfig]
    fingerprint: dict[str, Any] | None = None
    tolerances: Tolerances = field(default_factory=Tolerances)
    speed_ratios: dict[str, float] = field(default_factory=dict)
    note: str = ""

    def __post_init__(self) -> None:
        for name, value in self.speed_ratios.items():
            _finite(f"speed ratio {name!r}", value)


@dataclass(frozen=True)
class CheckResult:
    name: str
    status: str  # pass | regressed | skipped
    detail: str


def fingerprint(df) -> dict[str, Any]:
    """What must match for checksums to be comparable: CPU model, threads, torch/diffusers versions."""
    versions = json.loads(df.versions.dropna().iloc[0]) if df.versions.notna().any() else {}
    return {"device_name": str(df.device_name.dropna().iloc[0]) if df.device_name.notna().any() else None,
            "threads": int(df.threads.dropna().iloc[0]) if df.threads.notna().any() else None,
            "torch": versions.get("torch"), "diffusers": versions.get("diffusers")}


def _stages(df) -> list[int]:
    """The stage numbers i of a results frame's ``s{i}_*`` columns, in order (any depth)."""
    return sorted(int(c[1:].split("_", 1)[0]) for c in df.columns if c.startswith("s") and c.endswith("_nfe_executed")
                  and c[1:].split("_", 1)[0].isdigit())


def speed_ratios(df) -> dict[str, float]:
    """Mean denoising time per video of each cascade configuration / the costliest single-stage of its size."""
    done = df[df.status == "done"].copy()
    # denoising loops only (the paper's timings exclude the VAE; VAE time on CPU is dominated by memory traffic
    # and varies far more between runs than the compute-bound transformer loops)
    done["model_s"] = sum(done[f"s{i}_denoise_s"].fillna(0) for i in _stages(done))
    means = done.groupby(["config", "family", "size"], as_index=False).agg(total_s=("model_s", "mean"),
                                                                             flops=("flops_total", "first"))
    out = {}
    for size, group in means.groupby("size"):
        single = group[group.family == "single-stage"]
        if single.empty:
            continue
        ref = single.sort_values(["flops", "config"]).iloc[-1]  # the most expensive single-stage configuration
        for row in group[group.family == "cascade"].itertuples():
            out[f"{row.config} / {ref.config}"] = float(row.total_s / ref.total_s)
    return out


def summarize(df) -> dict[str, Any]:
    """The baseline a run gives: per configuration FLOPs, NFE, checksums, metric means; speed ratios; fingerprint."""
    done = df[df.status == "done"]
    holes = done[done.flops_total.isna() | done.s1_nfe_executed.isna()]
    if len(holes):
        raise FvbenchError(f"{len(holes)} finished video(s) have no FLOPs or executed NFE in the store (e.g. "
                           f"{holes.config.iloc[0]} / {holes.prompt_id.iloc[0]}): was it edited? rerun into a new --out")
    metric_cols = [c for c in done.columns if c.startswith("metric:")]
    configs = {}
    for config, g in done.groupby("config"):
        entry: dict[str, Any] = {
            "videos": int(len(g)), "flops_total": int(g.flops_total.iloc[0]),
            "nfe_executed": [int(g[f"s{i}_nfe_executed"].dropna().iloc[0]) for i in _stages(g)
                             if g[f"s{i}_nfe_executed"].notna().any()],
            "checksums": {f"{r.prompt_id}/{r.sample}": h for r, h in zip(g.itertuples(), g.final_video_sha256)},
            "metrics": {c.removeprefix("metric:"): float(g[c].mean()) for c in metric_cols if g[c].notna().any()},
        }
        configs[config] = entry
    return {"fingerprint": fingerprint(done), "tolerances": dict(DEFAULT_TOLERANCES), "configs": configs,
            "speed_ratios": speed_ratios(done)}


def compare(df, baseline: dict[str, Any]) -> list[CheckResult]:
    """Every check of a run against a baseline."""
    current = summarize(df)
    tol = {**DEFAULT_TOLERANCES, **(baseline.get("tolerances") or {})}
    same_hw = current["fingerprint"] == baseline.get("fingerprint")
    results: list[CheckResult] = []
    for config, base in (baseline.get("configs") or {}).items():
        cur = current["configs"].get(config)
        if cur is None:
            results.append(CheckResult(f"{config}: present", "regressed", "configuration missing from the run"))
            continue
        ok = cur["flops_total"] == base["flops_total"]
        results.append(CheckResult(f"{config}: FLOPs per video", "pass" if ok else "regressed",
                                   f"{cur['flops_total']:,} vs baseline {base['flops_total']:,}"))
        ok = cur["nfe_executed"] == base["nfe_executed"]
        results.append(CheckResult(f"{config}: NFE executed", "pass" if ok else "regressed",
                                   f"{cur['nfe_executed']} vs baseline {base['nfe_executed']}"))
        if not same_hw:
            results.append(CheckResult(f"{config}: output checksums", "skipped",
                                       "different hardware/software fingerprint than the baseline"))
        else:
            common = set(cur["checksums"]) & set(base.get("checksums", {}))
            changed = sorted(k for k in common if cur["checksums"][k] != base["checksums"][k])
            if not common:
                results.append(CheckResult(f"{config}: output checksums", "regressed", "no videos in common"))
            else:
                results.append(CheckResult(f"{config}: output checksums", "regressed" if changed else "pass",
                                           f"{len(changed)} of {len(common)} videos changed" +
                                           (f" (e.g. {changed[0]})" if changed else "")))
        for name, value in (base.get("metrics") or {}).items():
            got = cur["metrics"].get(name)
            label = f"{config}: metric {name}"
            if got is None:
                results.append(CheckResult(label, "regressed", "missing from the run"))
                continue
            limit = max(tol["metric_abs"], abs(value) * tol["metric_rel"])
            ok = abs(got - value) <= limit
            results.append(CheckResult(label, "pass" if ok else "regressed",
                                       f"{got:.6g} vs baseline {value:.6g} (tolerance +/- {limit:.3g})"))
    for name, value in (baseline.get("speed_ratios") or {}).items():
        got = current["speed_ratios"].get(name)
        label = f"speed ratio {name}"
        if got is None:
            results.append(CheckResult(label, "regressed", "not measurable in the run"))
            continue
        limit = value * (1 + tol["speed_ratio_rel"])
        results.append(CheckResult(label, "pass" if got <= limit else "regressed",
                                   f"{got:.3f} vs baseline {value:.3f} (regression above {limit:.3f}; "
                                   f"denoising seconds per video, both measured in this run)"))
    return results


def load_baseline(path: Path) -> dict[str, Any]:
    """A baseline file, validated against :class:`Baseline` (a wrong shape is a FvbenchError: exit 2, not 1)."""
    data = load_data(path)
    if not isinstance(data, dict) or "configs" not in data:
        raise FvbenchError(f"{path} is not an fvbench baseline (no 'configs')")
    base = from_dict(Baseline, data, f"baseline {path}")
    out = dataclasses.asdict(base)
    for entry in out["configs"].values():
        entry["nfe_executed"] = list(entry["nfe_executed"])  # compared with a run's summary, which holds lists
    return out


def write_baseline(df, path: Path, note: str = "") -> None:
    """Write the run's summary as a baseline (atomically); tolerances already in ``path`` are kept (they are set by hand)."""
    data = summarize(df)
    if Path(path).is_file():
        try:
            data["tolerances"] = {**data["tolerances"], **(load_baseline(Path(path)).get("tolerances") or {})}
        except FvbenchError:
            pass  # not a baseline: replaced whole
    if note:
        data = {"note": note, **data}
    write_atomic(Path(path), yaml.safe_dump(data, sort_keys=False, allow_unicode=True))


def write_junit(results: list[CheckResult], path: Path) -> None:
    """JUnit XML: one testcase per check, failures for regressions, skipped for skips."""
    suite = ET.Element("testsuite", name="fvbench check", tests=str(len(results)),
                       failures=str(sum(r.status == "regressed" for r in results)),
                       skipped=str(sum(r.status == "skipped" for r in results)))
    for r in results:
        case = ET.SubElement(suite, "testcase", classname="fvbench.check", name=r.name)
        if r.status == "regressed":
            ET.SubElement(case, "failure", message=r.detail)
        elif r.status == "skipped":
            ET.SubElement(case, "skipped", message=r.detail)
    with atomic_output(Path(path)) as tmp:
        ET.ElementTree(suite).write(tmp, encoding="utf-8", xml_declaration=True)
