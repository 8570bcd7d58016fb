"""Plug-in seams: a package fvbench has never heard of adds a metric, a suite and presets from its own folder; `fvbench`
runs, lists and scores them with nothing in fvbench edited; a broken plug-in stops with one line naming it; the core
names no toy world (ShapesWorld registers itself like any other plug-in)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]

PLUGIN = '''
"""A third-party fvbench plug-in: registers a metric (imported only when used), a suite and a preset folder shipped
beside it."""
from pathlib import Path

from fvbench.generation.presets import register_preset_dir
from fvbench.metrics.registry import register_metric
from fvbench.suites import register_suite

register_metric("tp_mean_level", "tp_metrics:MeanLevel", origin="tp_plugin")
register_suite("tp-suite", Path(__file__).with_name("tp_suite.yaml"), origin="tp_plugin")
register_preset_dir(Path(__file__).with_name("tp_presets"), origin="tp_plugin")
'''

METRIC = '''
import numpy as np

from fvbench.metrics.base import VideoMetric


class MeanLevel(VideoMetric):
    name = "tp_mean_level"
    version = "tp1"
    direction = "descriptive"
    description = "mean pixel level / 255 (a third-party test metric)"

    def score(self, video, *, prompt, reference=None):
        return float(np.asarray(video, dtype=np.float64).mean() / 255)
'''

SUITE = '''
name: tp-suite
description: two prompts shipped by a third-party plug-in
metrics: [tp_mean_level]
prompts:
  - {id: tp-0, text: "a red cat"}
  - {id: tp-1, text: "a blue dog"}
'''

PRESETS = """
components:
  vae:
    type: cogvideox-vae
    config: {block_out_channels: [8, 8, 8, 8], latent_channels: 4, layers_per_block: 1, norm_num_groups: 2,
             temporal_compression_ratio: 4,
             down_block_types: [CogVideoXDownBlock3D, CogVideoXDownBlock3D, CogVideoXDownBlock3D, CogVideoXDownBlock3D],
             up_block_types: [CogVideoXUpBlock3D, CogVideoXUpBlock3D, CogVideoXUpBlock3D, CogVideoXUpBlock3D]}
presets:
  tp-dit:
    description: a third-party tiny single-stage DiT
    family: single-stage
    size: tiny
    frames: 9
    weights: builtin
    max_text_length: 8
    components:
      tokenizer: {type: t5-tokenizer}
      text_encoder: {type: t5-encoder, config: {d_model: 32, d_ff: 64, d_kv: 16, num_heads: 2, num_layers: 1,
                                                feed_forward_proj: gated-gelu}}
      vae: vae
      dit: {type: cogvideox-transformer, config: {num_attention_heads: 2, attention_head_dim: 16, num_layers: 1,
             in_channels: 4, out_channels: 4, text_embed_dim: 32, time_embed_dim: 16, max_text_seq_length: 8,
             sample_height: 2, sample_width: 2, sample_frames: 9, use_rotary_positional_embeddings: true}}
    stages:
      - {name: stage1, transformer: dit, solver: ddim, nfe: 2, cfg: 6.0, height: 64, width: 64}
"""


def _fvbench(args: list[str], plugin_dir: Path, plugins: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "FVBENCH_PLUGINS": plugins, "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join([str(plugin_dir), str(ROOT)])}
    return subprocess.run([sys.executable, "-m", "fvbench.cli", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=plugin_dir)


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    folder = tmp_path / "third_party"
    folder.mkdir()
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(textwrap.dedent(text).lstrip())
    return folder


def test_third_party_metric_suite_and_presets_via_env(tmp_path):
    from fvbench.scoring import metrics_at_run
    from fvbench.store import load_results
    from fvbench.video import read_mp4

    pkg = _package(tmp_path, {"tp_plugin.py": PLUGIN, "tp_metrics.py": METRIC, "tp_suite.yaml": SUITE,
                              "tp_presets/tp.yaml": PRESETS})
    listed = _fvbench(["metrics"], pkg, "tp_plugin")
    assert listed.returncode == 0, listed.stderr
    assert re.search(r"^tp_mean_level +video-level, descriptive, not ranked, vtp1: mean pixel level", listed.stdout,
                     re.M)
    suites = _fvbench(["suites"], pkg, "tp_plugin")
    assert suites.returncode == 0 and "tp-suite" in suites.stdout.split()

    run = tmp_path / "run"
    ran = _fvbench(["run", "--suite", "tp-suite", "--presets", "tp-dit", "--no-warmup", "--out", str(run)],
                   pkg, "tp_plugin")
    assert ran.returncode == 0, ran.stderr
    df = load_results(run)
    assert list(df.config) == ["tp-dit_s1-2"] * 2  # the plug-in's preset, from its own folder
    assert df["metric:tp_mean_level"].notna().all()  # the suite's metric, computed in the run
    assert metrics_at_run(run)["tp_mean_level"]["source"] == "frames"

    scored = _fvbench(["score", str(run), "--metrics", "tp_mean_level"], pkg, "tp_plugin")
    assert scored.returncode == 0, scored.stderr
    assert "scored 2 videos with tp_mean_level" in scored.stdout
    df = load_results(run)
    for r in df.to_dict("records"):  # now from the decoded mp4, as fvbench score reads it
        expected = read_mp4(run / r["final_video_path"]).astype(np.float64).mean() / 255
        assert r["metric:tp_mean_level"] == pytest.approx(expected, abs=1e-12)
    entry = metrics_at_run(run)["tp_mean_level"]
    assert (entry["version"], entry["source"], entry["stored"], entry["available"]) == ("tp1", "mp4", True, True)

    # without the plug-in, fvbench does not know the names (nothing was added to fvbench itself)
    bare = _fvbench(["score", str(run), "--metrics", "tp_mean_level"], pkg, "")
    assert bare.returncode == 2 and "unknown metric 'tp_mean_level'" in bare.stderr.lower()


@pytest.mark.parametrize("files, plugins, message", [
    ({"broken_plugin.py": "raise RuntimeError('this plug-in is broken\\nsecond line')\n"}, "broken_plugin",
     "error: plug-in 'broken_plugin' failed to import: RuntimeError: this plug-in is broken"),
    ({}, "no_such_plugin", "error: plug-in 'no_such_plugin' failed to import: ModuleNotFoundError: "),
    ({"dup_plugin.py": "from fvbench.metrics.registry import register_metric\n"
                       "register_metric('temporal_flickering', 'dup_plugin:X', origin='dup_plugin')\n"},
     "dup_plugin", "error: plug-in 'dup_plugin' failed to import: FvbenchError: metric 'temporal_flickering' is "
                   "registered twice (fvbench and dup_plugin)"),
])
def test_a_broken_plugin_is_one_line_and_a_nonzero_exit(tmp_path, files, plugins, message):
    pkg = _package(tmp_path, files)
    for args in (["metrics"], ["suites"]):
        p = _fvbench(args, pkg, plugins)
        assert p.returncode == 2, (args, p.stdout, p.stderr)
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(message), p.stderr


def test_listing_imports_every_plugin_and_nothing_heavy(tmp_path):
    code = ("import sys\nfrom fvbench.metrics.registry import list_metrics\nfrom fvbench.suites import list_suites\n"
            "from fvbench.plugins import discover\nlist_metrics(); list_suites()\n"
            "print(sorted(discover())); print([m for m in ('torch', 'diffusers', 'pandas') if m in sys.modules])")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("FVBENCH_PLUGINS", None)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    loaded, heavy = out.stdout.strip().splitlines()
    assert "fvbench.shapesworld.plugin" in loaded and heavy == "[]"


# Files outside fvbench/shapesworld/ that still name ShapesWorld: the report, which its own change moves into the
# plug-in's registered report section. Nothing else may.
REPORT_FILES: set[str] = set()  # the report names it no more either (its section is a plug-in)


def test_core_does_not_name_shapesworld():
    pattern = re.compile(r"shapes ?world|\bsw_|\bsw-", re.I)
    found = []
    for path in sorted((ROOT / "fvbench").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith("fvbench/shapesworld/") or rel in REPORT_FILES:
            continue
        found += [f"{rel}:{i}" for i, line in enumerate(path.read_text().splitlines(), 1) if pattern.search(line)]
    assert found == []


def test_shapesworld_registers_through_the_seams():
    from fvbench.commands import PLUGIN_COMMANDS
    from fvbench.metrics.registry import METRICS
    from fvbench.spec import DEFAULT_SWEEP
    from fvbench.suites import SUITES, load_suite

    origin = "fvbench.shapesworld"
    assert {n for n in METRICS if METRICS.origin(n) == origin} == {
        "sw_colour", "sw_shape", "sw_direction", "sw_all_three", "sw_detail_ratio", "sw_temporal_rms_px",
        "sw_fidelity_psnr", "sw_consistency_psnr"}
    assert SUITES.origin("shapesworld") == origin and DEFAULT_SWEEP.origin("families") == origin
    assert PLUGIN_COMMANDS.origin("shapesworld") == origin
    # the old path still works: suites/shapesworld.yaml is the plug-in's file
    suite = load_suite("suites/shapesworld.yaml")
    assert suite.sha256 == load_suite("shapesworld").sha256 and len(suite.prompts) == 18


def test_a_metric_that_does_not_import_is_named_and_the_others_still_run(capsys):
    """A plug-in's metric whose class cannot be imported: using it is a one-line error naming who registered it;
    listing and the run's availability record show it as unavailable and go on."""
    from fvbench.cli import main
    from fvbench.errors import FvbenchError
    from fvbench.metrics.registry import METRICS, register_metric, resolve
    from fvbench.scoring import availability

    register_metric("tp_unimportable", "tp_nowhere:Nothing", origin="tp_broken")
    try:
        with pytest.raises(FvbenchError, match=r"metric 'tp_unimportable' \(registered by tp_broken\) cannot be "
                                               r"imported: ModuleNotFoundError"):
            resolve(["motion_px", "tp_unimportable"])
        at_run = availability(["motion_px"])
        assert at_run["motion_px"]["available"] and at_run["motion_px"]["source"] == "frames"
        broken = at_run["tp_unimportable"]
        assert broken["available"] is False and "tp_nowhere" in broken["missing"][0]
        assert main(["metrics"]) == 0
        listed = capsys.readouterr().out
        assert re.search(r"^tp_unimportable +\[unavailable: metric 'tp_unimportable'", listed, re.M)
        assert re.search(r"^motion_px +video-level", listed, re.M)
    finally:
        METRICS.unregister("tp_unimportable")
