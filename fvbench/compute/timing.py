"""Timers at stage and component boundaries (device-synchronised on CUDA) and per-stage peak memory.

Peak memory is max allocated on CUDA; on CPU it is the peak resident set size (VmHWM), reset at each stage start
by writing 5 to /proc/self/clear_refs (Linux). Where the reset is not possible the value is the process peak so
far, and :attr:`PeakMemory.scope` says so.
"""

from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager
from typing import Iterator

import torch


def synchronize(device: torch.device | str) -> None:
    """Wait for queued device work so that wall time covers it (no-op on CPU)."""
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    elif dev.type == "mps":
        torch.mps.synchronize()


class ComponentTimer:
    """Accumulates wall time per component key (``text_encode``, ``denoise``, ``vae_decode`` ...)."""

    def __init__(self, device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.seconds: dict[str, float] = defaultdict(float)

    @contextmanager
    def time(self, key: str) -> Iterator[None]:
        synchronize(self.device)
        start = time.perf_counter()
        try:
            yield
        finally:
            synchronize(self.device)
            self.seconds[key] += time.perf_counter() - start


def _read_vm_hwm() -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _reset_vm_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class PeakMemory:
    """Peak memory over a block: CUDA max allocated, or CPU peak RSS (``scope`` is 'stage' or 'process')."""

    def __init__(self, device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.bytes: int | None = None
        self.kind = "cuda_max_allocated" if self.device.type == "cuda" else "cpu_peak_rss"
        self.scope = "stage"

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        elif not _reset_vm_hwm():
            self.scope = "process"
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            self.bytes = int(torch.cuda.max_memory_allocated(self.device))
        else:
            self.bytes = _read_vm_hwm()
