"""Provenance recorded with every result: git hash, package versions, device, threads."""

from __future__ import annotations

import importlib.metadata
import platform
import subprocess
from functools import lru_cache
from typing import Any

import torch

from fvbench.paths import REPO_ROOT

_PACKAGES = ("fvbench", "torch", "diffusers", "transformers", "torchmetrics", "numpy", "pandas")


@lru_cache(maxsize=1)
def git_hash() -> str:
    """The fvbench checkout's commit (with '+dirty' if it has uncommitted changes), or 'unknown'."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                              timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for p in _PACKAGES:
        try:
            out[p] = importlib.metadata.version(p)
        except importlib.metadata.PackageNotFoundError:
            out[p] = "absent"
    return out


def device_info(device: str | torch.device) -> dict[str, Any]:
    """What ran the work: device name, CPU model, thread count."""
    dev = torch.device(device)
    info: dict[str, Any] = {"device": str(dev), "torch_threads": torch.get_num_threads(), "machine": platform.machine()}
    if dev.type == "cuda":
        info["device_name"] = torch.cuda.get_device_name(dev)
    else:
        try:
            with open("/proc/cpuinfo") as f:
                info["device_name"] = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")),
                                           platform.processor() or "cpu")
        except OSError:
            info["device_name"] = platform.processor() or "cpu"
    return info


def provenance(device: str | torch.device) -> dict[str, Any]:
    return {"git": git_hash(), "versions": versions(), **device_info(device)}
