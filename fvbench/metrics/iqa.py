"""The per-frame image-quality metrics of the FlashVideo paper (MUSIQ, CLIP-IQA, NIQE, MANIQA), via pyiqa out of process.

pyiqa cannot be installed beside this stack: it imports torchvision (which does not import beside the CPU torch
here), opencv, timm and scikit-image. VBench's environment has it (vbench depends on pyiqa, and uses its MUSIQ for
imaging_quality), so fvbench runs pyiqa in the interpreter named by $FVBENCH_PYIQA_PYTHON: one worker process per
metric, started once, fed one video at a time as a ``.npy`` file of frames, answering with per-frame scores on a
JSON line. The worker blocks network access (a non-loopback connect raises), so a missing weight fails instead of
downloading, and it loads the metric at start (:meth:`PyIQAMetric.prepare`, called by ``resolve``), so a missing or
broken weight fails before any generation.

Weights live where pyiqa looks for them under the torch hub folder ($FVBENCH_PYIQA_HUB, default $TORCH_HOME/hub or
~/.cache/torch/hub; the worker calls ``torch.hub.set_dir`` on it before importing pyiqa): ``pyiqa/<file>`` for
pyiqa's own checkpoints and ``clip/RN50.pt`` for CLIP-IQA's backbone, as pyiqa (2025-2026 releases) names them.
The file names listed by ``fvbench metrics`` are those; other pyiqa versions may want others, which the worker's
start-up load then reports.

Each score is the mean over 8 frames spread evenly over the video (``frames=None``: every frame), each frame
scored alone as float RGB in [0, 1] at its own resolution, as pyiqa's ``create_metric(name)`` defaults do.
"""

from __future__ import annotations

import atexit
import json
import os
import select
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from fvbench.errors import FvbenchError, MissingWeightsError
from fvbench.metrics.base import Needs, VideoMetric, check_video, sample_indices

PYTHON_ENV = "FVBENCH_PYIQA_PYTHON"
HUB_ENV = "FVBENCH_PYIQA_HUB"

WORKER = r'''
import json, os, socket, sys

proto = os.fdopen(os.dup(1), "w")  # replies go here; anything the libraries print goes to stderr
os.dup2(2, 1)
sys.stdout = sys.stderr
_connect = socket.socket.connect


def _guarded(self, address):
    host = address[0] if isinstance(address, tuple) else None
    if host is not None and host not in ("127.0.0.1", "::1", "localhost"):
        raise OSError(f"fvbench blocks network access from the pyiqa worker (tried {address}): a weight is missing")
    return _connect(self, address)


socket.socket.connect = _guarded


def reply(obj):
    proto.write(json.dumps(obj) + "\n")
    proto.flush()


try:
    req = json.loads(sys.stdin.readline())
    import numpy as np
    import torch

    torch.hub.set_dir(req["hub"])
    torch.set_num_threads(int(req["threads"]))
    import pyiqa

    metric = pyiqa.create_metric(req["metric"], device=req["device"])
    reply({"ready": True, "pyiqa": str(getattr(pyiqa, "__version__", "unknown")),
           "lower_better": bool(getattr(metric, "lower_better", False))})
except BaseException as e:
    reply({"error": f"{type(e).__name__}: {e}"})
    sys.exit(1)

for line in sys.stdin:
    try:
        frames = np.load(json.loads(line)["frames"])
        scores = []
        with torch.no_grad():
            for f in frames:
                x = torch.from_numpy(f).permute(2, 0, 1)[None].float().div(255.0).to(req["device"])
                scores.append(float(metric(x).flatten()[0]))
        reply({"scores": scores})
    except Exception as e:
        reply({"error": f"{type(e).__name__}: {e}"})
'''


def hub_dir() -> Path:
    """The torch hub folder the pyiqa worker uses: $FVBENCH_PYIQA_HUB, else torch's own default rule."""
    if os.environ.get(HUB_ENV):
        return Path(os.environ[HUB_ENV]).expanduser()
    torch_home = os.environ.get("TORCH_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "torch")
    return Path(torch_home).expanduser() / "hub"


@lru_cache(maxsize=8)
def _has_pyiqa(python: str) -> bool:
    """Whether ``python`` can import pyiqa (checked without importing it: a find_spec, about 30 ms)."""
    try:
        proc = subprocess.run([python, "-c", "import importlib.util, sys; "
                               "sys.exit(0 if importlib.util.find_spec('pyiqa') else 3)"],
                              capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0


@dataclass
class _Worker:
    """A running pyiqa worker: the process, its scratch folder, its stderr log, what it reported at start."""

    proc: subprocess.Popen
    scratch: Path
    log: Any
    pyiqa_version: str
    lower_better: bool

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()  # type: ignore[union-attr]
                self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.scratch, ignore_errors=True)


_WORKERS: dict[tuple[str, str, str, str], _Worker] = {}


@atexit.register
def close_workers() -> None:
    """Stop every pyiqa worker this process started."""
    while _WORKERS:
        _WORKERS.popitem()[1].close()


def _log_tail(worker_log: Path, lines: int = 3) -> str:
    try:
        text = worker_log.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(text[-lines:])[:400]


# Older pyiqa releases (0.1.10, the one VBench 0.1.5's environment resolves to) keep their checkpoints in
# <hub>/checkpoints/ (torch.hub's own folder) instead of <hub>/pyiqa/.
LEGACY_DIR = "checkpoints"


def _legacy(f: str) -> str | None:
    return f"{LEGACY_DIR}/{f.removeprefix('pyiqa/')}" if f.startswith("pyiqa/") else None


def _present(hub: Path, f: str) -> bool:
    """A weight file is there under pyiqa's current name or, for pyiqa's own checkpoints, its older folder."""
    legacy = _legacy(f)
    return (hub / f).is_file() or (legacy is not None and (hub / legacy).is_file())


def _legacy_note(f: str, hub: Path) -> str:
    legacy = _legacy(f)
    return f" (or {hub / legacy} for pyiqa 0.1.10, as in VBench's environment)" if legacy else ""


class PyIQAMetric(VideoMetric):
    """A pyiqa no-reference metric, scored per frame in an external interpreter, averaged over frames."""

    pyiqa_name: ClassVar[str]
    weight_files: ClassVar[tuple[str, ...]]  # relative to the torch hub folder
    base_version: ClassVar[str] = "1-pyiqa-8frames"
    frames: int | None = 8
    timeout: float = 600.0
    device: str = "cpu"

    def __init__(self, frames: int | None = 8, device: str = "cpu", timeout: float = 600.0):
        super().__init__()
        self.frames, self.device, self.timeout = frames, device, timeout
        self._pyiqa_version: str | None = None

    @property
    def version(self) -> str:  # type: ignore[override]
        frames = "allframes" if self.frames is None else f"{self.frames}frames"
        v = self.base_version.replace("8frames", frames)
        return v + (f"-pyiqa{self._pyiqa_version}" if self._pyiqa_version else "")

    def missing(self) -> list[str]:
        out = super().missing()
        python = os.environ.get(PYTHON_ENV)
        if not out and python and not _has_pyiqa(python):
            out.append(f"pyiqa is not importable by {python} (${PYTHON_ENV}; e.g. the VBench environment's python)")
        hub = hub_dir()
        out += [f"missing {hub / f}{_legacy_note(f, hub)} (pyiqa weight for {self.pyiqa_name}; set ${HUB_ENV} to the "
                f"torch hub folder that holds it)" for f in self.weight_files if not _present(hub, f)]
        return out

    def _key(self) -> tuple[str, str, str, str]:
        return (os.environ.get(PYTHON_ENV, ""), self.pyiqa_name, str(hub_dir()), self.device)

    def prepare(self) -> None:
        """Start the worker and load the metric there (network blocked); MissingWeightsError if that fails."""
        self._worker()

    def _worker(self) -> _Worker:
        key = self._key()
        worker = _WORKERS.get(key)
        if worker is not None and worker.proc.poll() is None:
            return worker
        if worker is not None:
            _WORKERS.pop(key).close()
        missing = self.missing()
        if missing:
            raise MissingWeightsError(f"{self.name}: " + "; ".join(missing))
        scratch = Path(tempfile.mkdtemp(prefix="fvbench-pyiqa-"))
        (scratch / "worker.py").write_text(WORKER, encoding="utf-8")
        log = open(scratch / "worker.log", "w", encoding="utf-8")
        env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1")
        proc = subprocess.Popen([key[0], str(scratch / "worker.py")], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=log, text=True, bufsize=1, env=env)
        worker = _Worker(proc, scratch, log, "", False)
        try:
            start = self._ask(worker, {"metric": self.pyiqa_name, "hub": key[2], "device": self.device,
                                       "threads": os.environ.get("OMP_NUM_THREADS", "2")})
        except FvbenchError as e:
            worker.close()
            raise MissingWeightsError(f"{self.name}: pyiqa could not load {self.pyiqa_name!r} in {key[0]} "
                                      f"(network blocked): {e}") from None
        worker.pyiqa_version, worker.lower_better = start["pyiqa"], start["lower_better"]
        if worker.lower_better == self.higher_is_better:
            worker.close()
            raise FvbenchError(f"{self.name}: pyiqa says lower_better={worker.lower_better} for {self.pyiqa_name}, "
                               f"fvbench declares higher_is_better={self.higher_is_better}")
        self._pyiqa_version = worker.pyiqa_version
        _WORKERS[key] = worker
        return worker

    def _ask(self, worker: _Worker, request: dict[str, Any]) -> dict[str, Any]:
        """Send one JSON line, wait (up to the timeout) for one JSON line back; FvbenchError on any failure."""
        try:
            worker.proc.stdin.write(json.dumps(request) + "\n")  # type: ignore[union-attr]
            worker.proc.stdin.flush()  # type: ignore[union-attr]
        except OSError:
            pass  # the process died; reported below with its log
        ready, _, _ = select.select([worker.proc.stdout], [], [], self.timeout)
        line = worker.proc.stdout.readline() if ready else ""  # type: ignore[union-attr]
        if not line:
            if ready:  # end of file: the worker exited
                try:
                    code = worker.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    worker.proc.kill()
                    code = worker.proc.wait()
                what = f"pyiqa worker exited (code {code})"
            else:
                worker.proc.kill()
                worker.proc.wait()
                what = f"pyiqa worker gave no answer within {self.timeout:.0f} s (stopped)"
            raise FvbenchError(f"{what}: {_log_tail(worker.scratch / 'worker.log')}")
        try:
            answer = json.loads(line)
        except json.JSONDecodeError:
            raise FvbenchError(f"pyiqa worker answered something that is not JSON: {line[:200]!r}") from None
        if "error" in answer:
            raise FvbenchError(str(answer["error"])[:500])
        return answer

    def score(self, video, *, prompt, reference=None):
        v = check_video(video)
        frames = v if self.frames is None else v[sample_indices(len(v), self.frames)]
        worker = self._worker()
        path = worker.scratch / "frames.npy"
        np.save(path, frames)
        scores = self._ask(worker, {"frames": str(path)}).get("scores")
        if not isinstance(scores, list) or len(scores) != len(frames):
            raise FvbenchError(f"pyiqa worker returned {scores!r} for {len(frames)} frames")
        return float(np.mean(scores))


class MUSIQ(PyIQAMetric):
    """MUSIQ (KonIQ-10k checkpoint), pyiqa ``musiq``: higher is better, about 0-100."""

    name = "musiq"
    pyiqa_name = "musiq"
    higher_is_better = True
    weight_files = ("pyiqa/musiq_koniq_ckpt-e95806b9.pth",)
    needs = Needs(interpreter_env=PYTHON_ENV)
    description = "MUSIQ (KonIQ) per frame via pyiqa in $FVBENCH_PYIQA_PYTHON, mean of 8 frames (as in FlashVideo)"


class CLIPIQA(PyIQAMetric):
    """CLIP-IQA, pyiqa ``clipiqa`` (CLIP RN50 with antonym prompt pairs): higher is better, 0-1."""

    name = "clip_iqa"
    pyiqa_name = "clipiqa"
    higher_is_better = True
    weight_files = ("clip/RN50.pt",)
    needs = Needs(interpreter_env=PYTHON_ENV)
    description = "CLIP-IQA per frame via pyiqa in $FVBENCH_PYIQA_PYTHON, mean of 8 frames (as in FlashVideo)"


class NIQE(PyIQAMetric):
    """NIQE, pyiqa ``niqe``: lower is better. Needs frames of at least about 96x96 pixels."""

    name = "niqe"
    pyiqa_name = "niqe"
    higher_is_better = False
    weight_files = ("pyiqa/niqe_modelparameters.mat",)
    needs = Needs(interpreter_env=PYTHON_ENV)
    description = "NIQE per frame via pyiqa in $FVBENCH_PYIQA_PYTHON, mean of 8 frames (as in FlashVideo)"


class MANIQA(PyIQAMetric):
    """MANIQA (KonIQ checkpoint), pyiqa ``maniqa``: higher is better, about 0-1.

    It also builds timm's ``vit_base_patch8_224`` with ImageNet weights from the Hugging Face cache; fvbench cannot
    name that file for every timm version, so only the worker's start-up load (network blocked) checks it.
    """

    name = "maniqa"
    pyiqa_name = "maniqa"
    higher_is_better = True
    weight_files = ("pyiqa/ckpt_koniq10k.pt",)
    needs = Needs(interpreter_env=PYTHON_ENV)
    description = "MANIQA (KonIQ) per frame via pyiqa in $FVBENCH_PYIQA_PYTHON, mean of 8 frames (as in FlashVideo)"
