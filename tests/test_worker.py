"""GroupWorker directly: prefix sharing at any depth gives the videos of direct generation, computed once per prefix."""

from __future__ import annotations

from collections import Counter

import torch

from fvbench.generation.generator import Generator
from fvbench.generation.presets import get_preset
from fvbench.runner import make_plan
from fvbench.spec import ConfigPoint, SweepOptions, expand_units, group_units
from fvbench.worker import GroupWorker

PROVENANCE = {"device": "cpu", "device_name": "test", "torch_threads": 2, "git": None, "versions": {}}


def _worker(tmp_path, videos: dict) -> GroupWorker:
    def capture(video, unit, path):  # the final video tensor of each unit, as the worker hands it to metrics
        videos[unit.unit_hash] = video.clone()
        return {}

    return GroupWorker(tmp_path, PROVENANCE, ("test", "0" * 64), save_videos="none", metric_fn=capture)


def _run(worker: GroupWorker, groups) -> list[dict]:
    rows = [r.row for g in groups for r in worker.process(g, set())]
    assert all(r["status"] == "done" for r in rows), [r.get("error") for r in rows]
    return rows


def test_three_stage_preset_shares_stage1_and_stage2(tmp_path):
    prompts = tmp_path / "p.txt"
    prompts.write_text("a red cat\na blue dog\n")
    opts = SweepOptions(presets=("tiny-cascade3",), stage_nfe=((2, (1, 2)), (3, (1, 2))))
    plan = make_plan(str(prompts), opts, samples=1)
    assert len(plan.units) == 8
    assert plan.stage_computations() == [(2, 8), (4, 8), (8, 8)]
    videos: dict = {}
    rows = _run(_worker(tmp_path / "run", videos), plan.groups)
    by_unit = {u.unit_hash: u for u in plan.units}
    for prompt in ("a red cat", "a blue dog"):
        mine = [r for r in rows if r["prompt"] == prompt]
        assert len(mine) == 4
        assert sum(1 - r["s1_shared"] for r in mine) == 1  # stage I computed once per (prompt, seed)
        computed2 = Counter(r["s2_nfe"] for r in mine if not r["s2_shared"])
        assert computed2 == {1: 1, 2: 1}  # stage II once per stage-II variant
        assert all(r["s3_shared"] == 0 for r in mine)  # stage III differs in every unit
        assert sum(r["s3_init_shared"] for r in mine) == 2  # its z0 is shared across the stage-III NFE variants
    for r in rows:
        unit = by_unit[r["unit_hash"]]
        direct = Generator(unit.config.preset, _worker(tmp_path, {}).components("tiny-cascade3"), "cpu")
        result = direct.generate(unit.prompt.text, unit.seed)
        assert torch.equal(result.video, videos[r["unit_hash"]]), r["config"]
        assert [r[f"s{i}_nfe"] for i in (1, 2, 3)] == [s.nfe for s in unit.config.preset.stages]


def test_stage_output_needed_as_float_is_not_shared_with_one_that_kept_none(tmp_path):
    """Two variants differing only in how the next stage reads stage I (uint8 video or float pixels): stage I's
    output differs (pixels kept or not), so it must not be shared. The old stage-I key ignored it."""
    prompts = tmp_path / "p.txt"
    prompts.write_text("a red cat\n")
    suite = make_plan(str(prompts), SweepOptions(presets=("tiny-flashvideo",)), samples=1).suite
    base = get_preset("tiny-flashvideo")
    points = [ConfigPoint("tiny-flashvideo", base.with_overrides({"stage2": {"upsample_input": kind}}))
              for kind in ("uint8", "float")]
    units = expand_units(points, suite, 1)
    assert units[0].prefix_keys[0] != units[1].prefix_keys[0]
    videos: dict = {}
    worker = _worker(tmp_path / "run", videos)
    rows = _run(worker, group_units(units))
    assert len(rows) == 2
    for unit in units:
        direct = Generator(unit.config.preset, worker.components("tiny-flashvideo"), "cpu")
        assert torch.equal(direct.generate(unit.prompt.text, unit.seed).video, videos[unit.unit_hash])


def test_stage_keys_follow_what_each_stage_depends_on():
    gen = Generator.from_preset(get_preset("tiny-cascade3"))
    keys = gen.stage_keys("a cat", 7)
    assert keys[0].init is None and keys[1].init and keys[2].init  # flow stages have a z0 key
    assert gen.stage_keys("a cat", 7) == keys
    assert all(a.output != b.output for a, b in zip(gen.stage_keys("a cat", 8), keys))  # the seed reaches every stage
    later = Generator(gen.preset.with_overrides({"stage3": {"nfe": 5, "cfg": 2.0}}), gen.components, "cpu")
    k3 = later.stage_keys("a cat", 7)
    assert k3[:2] == keys[:2] and k3[2].init == keys[2].init and k3[2].output != keys[2].output
    mid = Generator(gen.preset.with_overrides({"stage2": {"nfe": 3}}), gen.components, "cpu").stage_keys("a cat", 7)
    assert mid[0] == keys[0] and mid[1].init == keys[1].init and mid[1].output != keys[1].output
    assert mid[2].output != keys[2].output and mid[2].init != keys[2].init  # stage III starts from another video
    res = Generator(gen.preset.with_overrides({"stage3": {"noise_step": 300}}), gen.components, "cpu")
    assert res.stage_keys("a cat", 7)[2].init != keys[2].init  # a field flow init reads changes the z0 key
