"""pyiqa metrics out of process: the real worker script runs in a stand-in interpreter whose ``pyiqa`` is a fake.

pyiqa cannot be installed here (it needs torchvision); the fake implements the bit of its API the worker uses
(``create_metric(name, device=...)`` returning a callable with ``lower_better``) and misbehaves on request, so the
protocol, the error handling and the fail-fast checks are what is tested. The real pyiqa is not exercised.
"""

import os
import stat
import sys
import textwrap

import numpy as np
import pytest

from fvbench.errors import MissingWeightsError
from fvbench.metrics.iqa import close_workers
from fvbench.metrics.registry import get_metric, resolve, score_video

FAKE_PYIQA = '''
import os, sys
__version__ = "0.0-fake"
print("fake pyiqa: this line goes to stdout and must not break the protocol")


class _Metric:
    def __init__(self, name):
        self.name = name
        self.lower_better = name == "niqe" or os.environ.get("FAKE_PYIQA_WRONG_DIRECTION") == "1"

    def __call__(self, x):
        import torch
        print("scoring a frame")  # more stdout noise
        if x.shape[-1] < 8:
            raise ValueError("frame too small for this fake")
        if os.environ.get("FAKE_PYIQA_CRASH") == "1" and x.shape[-1] == 9:
            os._exit(7)
        if os.environ.get("FAKE_PYIQA_CRASH") == "1" and x.shape[-1] == 10:
            import time
            time.sleep(60)
        return (x.mean() * 100).reshape(1, 1)


def create_metric(name, device=None, as_loss=False, **kwargs):
    import torch
    hub = torch.hub.get_dir()
    need = {"musiq": "pyiqa/musiq_koniq_ckpt-e95806b9.pth", "niqe": "pyiqa/niqe_modelparameters.mat",
            "clipiqa": "clip/RN50.pt", "maniqa": "pyiqa/ckpt_koniq10k.pt"}[name]
    if not os.path.isfile(os.path.join(hub, need)):
        raise FileNotFoundError(os.path.join(hub, need))
    if os.environ.get("FAKE_PYIQA_DOWNLOAD") == "1":
        import urllib.request
        urllib.request.urlopen("http://93.184.216.34/weights.pth", timeout=5)
    return _Metric(name)
'''


@pytest.fixture
def pyiqa_env(tmp_path, monkeypatch):
    """A stand-in interpreter with the fake pyiqa on its path, and a torch hub folder holding the weight files."""
    fake = tmp_path / "fake"
    (fake / "pyiqa").mkdir(parents=True)
    (fake / "pyiqa" / "__init__.py").write_text(FAKE_PYIQA)
    python = tmp_path / "iqa-python"
    python.write_text(textwrap.dedent(f"""\
        #!/bin/sh
        PYTHONPATH={fake} exec {sys.executable} "$@"
        """))
    python.chmod(python.stat().st_mode | stat.S_IEXEC)
    hub = tmp_path / "hub"
    for f in ("pyiqa/musiq_koniq_ckpt-e95806b9.pth", "pyiqa/niqe_modelparameters.mat", "clip/RN50.pt"):
        (hub / f).parent.mkdir(parents=True, exist_ok=True)
        (hub / f).write_bytes(b"")
    monkeypatch.setenv("FVBENCH_PYIQA_PYTHON", str(python))
    monkeypatch.setenv("FVBENCH_PYIQA_HUB", str(hub))
    yield hub
    close_workers()


def _video(f=5, h=16, w=16, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(f, h, w, 3), dtype=np.uint8)


def test_musiq_scores_frames_in_the_worker(pyiqa_env):
    (musiq, niqe) = resolve(["musiq", "niqe"])  # starts both workers, loads the (fake) metrics
    video = _video(f=12)
    idx = np.unique(np.linspace(0, 11, 8).round().astype(int))
    expected = np.mean([video[i].mean() / 255 * 100 for i in idx])
    assert musiq.score(video, prompt="") == pytest.approx(expected, rel=1e-5)
    assert niqe.score(video, prompt="") == pytest.approx(expected, rel=1e-5)
    assert musiq.version == "1-pyiqa-8frames-pyiqa0.0-fake"
    every = get_metric("musiq", frames=None)
    assert every.score(video, prompt="") == pytest.approx(video.mean() / 255 * 100, rel=1e-5)


def test_a_failing_video_is_recorded_and_the_worker_goes_on(pyiqa_env, monkeypatch):
    (musiq,) = resolve(["musiq"])
    flicker = get_metric("temporal_flickering")
    out = score_video([musiq, flicker], _video(w=4), "p")  # too small for the fake
    assert out["musiq"].value is None and "frame too small" in out["musiq"].error
    assert out["temporal_flickering"].value is not None
    assert np.isfinite(musiq.score(_video(), prompt=""))  # same worker, next video fine
    monkeypatch.setenv("FAKE_PYIQA_CRASH", "1")  # the worker dies on a 9-px-wide frame ...
    close_workers()  # (restart so the worker sees the variable)
    out = score_video([musiq], _video(w=9), "p")
    assert out["musiq"].value is None and "exited (code 7)" in out["musiq"].error
    assert np.isfinite(musiq.score(_video(), prompt=""))  # ... and is restarted for the next video
    musiq.timeout = 2.0  # a worker that hangs is stopped after the timeout
    out = score_video([musiq], _video(w=10), "p")
    assert out["musiq"].value is None and "no answer within 2 s" in out["musiq"].error
    musiq.timeout = 600.0  # the restarted worker's start-up is bounded by the same timeout: do not race it on a busy CPU
    assert np.isfinite(musiq.score(_video(), prompt=""))


def test_missing_weight_and_interpreter_fail_fast(pyiqa_env, monkeypatch, tmp_path):
    with pytest.raises(MissingWeightsError, match=str(pyiqa_env / "pyiqa" / "ckpt_koniq10k.pt")):
        resolve(["maniqa"])
    monkeypatch.setenv("FVBENCH_PYIQA_PYTHON", str(tmp_path / "no-python"))
    assert f"missing interpreter {tmp_path / 'no-python'}" in "; ".join(get_metric("musiq").missing())
    monkeypatch.setenv("FVBENCH_PYIQA_PYTHON", sys.executable)  # a python without pyiqa
    assert "pyiqa is not importable" in "; ".join(get_metric("musiq").missing())
    monkeypatch.delenv("FVBENCH_PYIQA_PYTHON")
    assert "set $FVBENCH_PYIQA_PYTHON" in "; ".join(get_metric("musiq").missing())


def test_weights_the_listing_does_not_know_fail_at_start_not_on_a_video(pyiqa_env, monkeypatch):
    (pyiqa_env / "clip" / "RN50.pt").unlink()
    (pyiqa_env / "clip").mkdir(exist_ok=True)
    monkeypatch.setattr("fvbench.metrics.iqa.CLIPIQA.weight_files", ())  # pretend fvbench does not know the file
    with pytest.raises(MissingWeightsError, match="could not load 'clipiqa'.*RN50.pt"):
        resolve(["clip_iqa"])


def test_the_worker_cannot_download(pyiqa_env, monkeypatch):
    monkeypatch.setenv("FAKE_PYIQA_DOWNLOAD", "1")
    with pytest.raises(MissingWeightsError, match="blocks network access"):
        resolve(["musiq"])


def test_direction_is_checked_against_pyiqa(pyiqa_env, monkeypatch):
    monkeypatch.setenv("FAKE_PYIQA_WRONG_DIRECTION", "1")
    with pytest.raises(Exception, match="lower_better=True"):
        resolve(["musiq"])


def test_workers_are_stopped(pyiqa_env):
    from fvbench.metrics import iqa

    resolve(["musiq"])
    (worker,) = iqa._WORKERS.values()
    close_workers()
    assert worker.proc.poll() is not None and not worker.scratch.exists() and not iqa._WORKERS
    assert os.environ["FVBENCH_PYIQA_HUB"] == str(pyiqa_env)
