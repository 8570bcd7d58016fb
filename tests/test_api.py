"""The library API owns the run: the same defaults as `fvbench run`, and the executor closed whatever happens."""

from __future__ import annotations

import pytest

import fvbench
import fvbench.store
from fvbench.cli import main
from fvbench.store import load_results


@pytest.mark.parametrize("args, kwargs", [
    (["--suite", "ci", "--presets", "tiny-flashvideo,tiny-dit"], {"suite": "ci", "presets": ("tiny-flashvideo", "tiny-dit")}),
    (["--suite", "ci", "--presets", "tiny-cascade3", "--stage-nfe", "3=1,2", "--limit", "all", "--metrics", "none"],
     {"suite": "ci", "presets": ("tiny-cascade3",), "stage_nfe": {3: (1, 2)}, "limit": "all", "metrics": ()}),
])
def test_cli_and_python_same_plan_and_defaults(args, kwargs, capsys):
    assert main(["run", *args, "--dry-run"]) == 0
    out = capsys.readouterr().out
    sweep = fvbench.plan_sweep(**kwargs)
    assert f"plan sha256 {sweep.plan_hash[:16]}" in out
    assert f"metrics per video: {', '.join(sweep.metrics) or 'none'}" in out
    assert f"{sweep.samples} sample(s) per prompt" in out
    total = sweep.plan.suite_total
    assert (f"the first {sweep.limit} of its {total} prompts" if sweep.limit else f"all {total} prompts") in out


def test_plan_sweep_defaults():
    sweep = fvbench.plan_sweep("ci", presets=("tiny-dit",))
    assert (sweep.limit, sweep.samples) == (2, 1)  # the presets fvbench ships on a registered suite
    assert len(sweep.plan.suite.prompts) == 2 and sweep.metrics  # the suite's then the offline metrics
    assert fvbench.plan_sweep("ci", presets=("tiny-dit",), limit="all", metrics=()).limit is None
    with pytest.raises(fvbench.errors.FvbenchError, match="--limit"):
        fvbench.plan_sweep("ci", presets=("tiny-dit",), limit="many")


class _Failing:
    """An executor that stores one video, then fails; it records whether it was shut down."""

    def __init__(self, worker):
        self.worker, self.closed = worker, 0

    def run(self, groups, skip, on_result):
        group = next(iter(groups))
        on_result(next(self.worker.process(group, skip)))
        raise RuntimeError("executor broke midway")

    def shutdown(self):
        self.closed += 1


def test_executor_is_shut_down_even_when_the_run_fails(tmp_path):
    sweep = fvbench.plan_sweep("ci", presets=("tiny-dit",), metrics=())
    from fvbench.provenance import provenance
    from fvbench.worker import GroupWorker

    fake = _Failing(GroupWorker(tmp_path / "run", provenance("cpu"), (sweep.plan.suite.name, sweep.plan.suite.sha256)))
    with pytest.raises(RuntimeError, match="broke midway"):
        fvbench.run_sweep(sweep, out=tmp_path / "run", executor=fake, warmup=False)
    assert fake.closed == 1
    assert len(load_results(tmp_path / "run")) == 1  # the video stored before the failure is kept
    result = fvbench.run_sweep(sweep, out=tmp_path / "run", warmup=False)  # the folder is not left locked
    assert (result.summary.done, result.summary.skipped) == (len(sweep.plan.units) - 1, 1)
    assert result.run_dir == tmp_path / "run"


def test_run_sweep_three_stage_preset_shares_prefixes(tmp_path):
    """tiny-cascade3 through the library: three stage rows per video in the store, shared prefixes, and a report."""
    sweep = fvbench.plan_sweep("ci", presets=("tiny-cascade3",), stage_nfe={3: (1, 2)}, metrics=(), limit=1)
    assert sweep.plan.stage_computations() == [(1, 2), (1, 2), (2, 2)]
    result = fvbench.run_sweep(sweep, out=tmp_path / "run", warmup=False, save_videos="none")
    df = load_results(result.run_dir)
    assert result.summary.done == 2 and sorted(df.s3_nfe) == [1, 2]
    assert sorted(df.s2_shared) == [0, 1] and sorted(df.s1_shared) == [0, 1]
    from fvbench.cli import main

    assert main(["report", str(result.run_dir)]) == 0  # a three-stage run reports
    md = (result.run_dir / "report" / "report.md").read_text(encoding="utf-8")
    assert "tiny-cascade3_s1-2_s2-1_s3-2" in md and (result.run_dir / "report" / "report.json").is_file()
