"""fvbench's pyiqa worker (fvbench/metrics/iqa.py) through the REAL pyiqa of the VBench environment
($FVBENCH_VBENCH_PYTHON, built by scripts/setup_vbench_env.sh), with checkpoints made here from pyiqa's own
architectures and random weights (seed 0), saved where that pyiqa looks (<hub>/checkpoints/ for pyiqa 0.1.10).

Covered: musiq (a random MUSIQ of the KonIQ configuration) and niqe (random natural-scene statistics in the .mat
layout pyiqa reads). Not covered: clip_iqa (pyiqa builds CLIP RN50 from OpenAI's checkpoint format, which no
registry package ships and which would have to be forged layer by layer) and maniqa (it also loads timm's
vit_base_patch8_224 ImageNet weights from the Hugging Face cache, about 350 MB of a layout this test cannot vouch for).
"""

import os
import subprocess
import textwrap

import numpy as np
import pytest

PYTHON = os.environ.get("FVBENCH_VBENCH_PYTHON")
pytestmark = [
    pytest.mark.vbench_real,
    pytest.mark.skipif(not PYTHON, reason="no real VBench environment (it has pyiqa): set FVBENCH_VBENCH_PYTHON to the "
                                          "python that `bash scripts/setup_vbench_env.sh` prints (.ci/run does)"),
]

MAKE = textwrap.dedent("""
    import sys, numpy as np, scipy.io, torch
    from pyiqa.archs.musiq_arch import MUSIQ
    hub = sys.argv[1]
    torch.manual_seed(0)
    torch.save(MUSIQ(pretrained=False).state_dict(), f"{hub}/checkpoints/musiq_koniq_ckpt-e95806b9.pth")
    rng = np.random.default_rng(0)
    a = rng.normal(size=(36, 36))
    scipy.io.savemat(f"{hub}/checkpoints/niqe_modelparameters.mat",
                     {"mu_prisparam": rng.normal(size=(1, 36)), "cov_prisparam": a @ a.T / 36 + np.eye(36)})
""")
DIRECT = textwrap.dedent("""
    import json, sys, numpy as np, torch
    torch.hub.set_dir(sys.argv[1])
    import pyiqa
    frames = np.load(sys.argv[2])
    out = {}
    for name in ("musiq", "niqe"):
        m = pyiqa.create_metric(name, device="cpu")
        x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0
        out[name] = [float(m(f[None])) for f in x]
    print(json.dumps(out))
""")


def test_pyiqa_worker_with_the_real_pyiqa_equals_pyiqa_called_directly(tmp_path, monkeypatch):
    import json

    from fvbench.metrics.base import sample_indices
    from fvbench.metrics.registry import resolve, score_video

    hub = tmp_path / "hub"
    (hub / "checkpoints").mkdir(parents=True)
    subprocess.run([PYTHON, "-c", MAKE, str(hub)], check=True, capture_output=True, timeout=300)
    monkeypatch.setenv("FVBENCH_PYIQA_PYTHON", PYTHON)
    monkeypatch.setenv("FVBENCH_PYIQA_HUB", str(hub))
    yy, xx = np.mgrid[0:128, 0:128]
    video = np.stack([np.stack([(xx * 2 + t * 5) % 256, (yy * 2) % 256, (xx + yy + 9 * t) % 256], -1)
                      for t in range(12)]).astype(np.uint8)  # 12 frames, 128x128 (NIQE needs >= 96 px)
    metrics = resolve(["musiq", "niqe"])  # starts the workers: the real pyiqa loads the local checkpoints
    out = score_video(metrics, video, "a test pattern")
    assert all(r.error is None for r in out.values()), out
    sampled = video[sample_indices(len(video), 8)]
    np.save(tmp_path / "frames.npy", sampled)
    proc = subprocess.run([PYTHON, "-c", DIRECT, str(hub), str(tmp_path / "frames.npy")], capture_output=True,
                          text=True, timeout=600, env=dict(os.environ, HF_HUB_OFFLINE="1"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    direct = json.loads(proc.stdout.strip().splitlines()[-1])
    for name in ("musiq", "niqe"):
        assert np.isfinite(out[name].value)
        assert out[name].value == pytest.approx(float(np.mean(direct[name])), rel=1e-6), name
    assert out["musiq"].version.startswith("1-pyiqa-8frames-pyiqa0.1")
