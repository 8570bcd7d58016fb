"""The regression gate: compare a run with a committed baseline.

Checked, per configuration: exact FLOPs per video and executed NFE; output checksums of the deterministic
CPU-scale presets (only when the hardware/software fingerprint matches the baseline's, since thread counts and
instruction sets may change the last bits); metric means within stated tolerances; and speed as ratios measured
inside the run (each cascade's mean denoising time per video / that of the most expensive single-stage configuration
of the same size; VAE time is left out, as in the paper's timings),
never absolute seconds.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from fvbench.dataio import load_data
from fvbench.errors import FvbenchError
from fvbench.runfiles import atomic_output, write_atomic

DEFAULT_TOLERANCES = {"metric_rel": 0.02, "metric_abs": 1e-6, "speed_ratio_rel": 0.5}


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


def speed_ratios(df) -> dict[str, float]:
    """Mean denoising time per video of each cascade configuration / the costliest single-stage of its size."""
    done = df[df.status == "done"].copy()
    # denoising loops only (the paper's timings exclude the VAE; VAE time on CPU is dominated by memory traffic
    # and varies far more between runs than the compute-bound transformer loops)
    done["model_s"] = done.s1_denoise_s.fillna(0) + done.s2_denoise_s.fillna(0)
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
    metric_cols = [c for c in done.columns if c.startswith("metric:")]
    configs = {}
    for config, g in done.groupby("config"):
        final = g.s2_video_sha256.where(g.s2_video_sha256.notna(), g.s1_video_sha256)
        entry: dict[str, Any] = {
            "videos": int(len(g)), "flops_total": int(g.flops_total.iloc[0]),
            "nfe_executed": [int(g.s1_nfe_executed.iloc[0])] + ([int(g.s2_nfe_executed.iloc[0])]
                                                                if g.s2_nfe_executed.notna().any() else []),
            "checksums": {f"{r.prompt_id}/{r.sample}": h for r, h in zip(g.itertuples(), final)},
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
    data = load_data(path)
    if not isinstance(data, dict) or "configs" not in data:
        raise FvbenchError(f"{path} is not an fvbench baseline (no 'configs')")
    unknown = sorted(set(data) - {"fingerprint", "tolerances", "configs", "speed_ratios", "note"})
    if unknown:
        raise FvbenchError(f"{path}: unknown key(s) {unknown}")
    return data


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
