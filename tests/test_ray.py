"""The Ray executor on a local Ray (2 actors, loopback, small object store, no dashboard): same rows as in-process,
and a worker killed mid-sweep has its group retried so every unit is stored exactly once."""

import os
import signal

import pytest
import torch

ray = pytest.importorskip("ray", reason="Ray is optional (pip install 'fvbench[ray]'); .ci/run installs it")

from fvbench import load_results  # noqa: E402
from fvbench.executors.ray import RayExecutor  # noqa: E402
from fvbench.provenance import provenance  # noqa: E402
from fvbench.runner import execute, make_plan  # noqa: E402
from fvbench.spec import SweepOptions  # noqa: E402
from fvbench.worker import GroupWorker  # noqa: E402

COLUMNS = ["unit_hash", "config", "prompt", "seed", "status", "s1_nfe_executed", "s2_nfe_executed",
           "s1_video_sha256", "s2_video_sha256", "flops_total"]


@pytest.fixture(scope="module")
def plan(tmp_path_factory):
    f = tmp_path_factory.mktemp("p") / "prompts.txt"
    f.write_text("a red cat\na blue dog\na green tree\n")
    return make_plan(str(f), SweepOptions(presets=("tiny-flashvideo", "tiny-dit"), stage1_nfe=(2, 3), stage2_nfe=(1, 2)))


@pytest.fixture(scope="module")
def local_rows(plan, tmp_path_factory):
    run = tmp_path_factory.mktemp("local") / "run"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # like one Ray actor, so checksums are comparable
    try:
        worker = GroupWorker(run, provenance("cpu"), (plan.suite.name, plan.suite.sha256))
        execute(plan, run, worker)
    finally:
        torch.set_num_threads(threads)
    return load_results(run).sort_values("unit_hash")[COLUMNS].reset_index(drop=True)


@pytest.fixture(scope="module")
def ray_session():
    yield
    if ray.is_initialized():
        ray.shutdown()


def _ray_run(plan, run, kill_after=None):
    args = {"run_dir": run, "provenance": provenance("cpu"), "suite": (plan.suite.name, plan.suite.sha256)}
    executor = RayExecutor(args, workers=2, threads_per_worker=1)
    killed = []

    def on_dispatch(n):
        if kill_after is not None and n == kill_after and not killed:
            pid = executor.actor_pids()[0]
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    executor.on_dispatch = on_dispatch
    worker = GroupWorker(run, provenance("cpu"), (plan.suite.name, plan.suite.sha256))
    summary = execute(plan, run, worker, executor=executor)
    pids = executor.actor_pids()
    executor.shutdown()
    return summary, killed, pids


def test_ray_gives_the_same_rows_as_in_process(plan, local_rows, tmp_path, ray_session):
    summary, _, _ = _ray_run(plan, tmp_path / "run")
    assert summary.done == len(plan.units) and summary.failed == 0
    rows = load_results(tmp_path / "run").sort_values("unit_hash")[COLUMNS].reset_index(drop=True)
    assert rows.equals(local_rows)


def test_a_killed_worker_is_retried_and_every_unit_stored_once(plan, local_rows, tmp_path, ray_session):
    summary, killed, pids = _ray_run(plan, tmp_path / "run", kill_after=3)
    assert killed and killed[0] not in pids  # the actor was restarted in a new process
    rows = load_results(tmp_path / "run").sort_values("unit_hash")[COLUMNS].reset_index(drop=True)
    assert rows.unit_hash.is_unique and len(rows) == len(plan.units)
    assert rows.equals(local_rows)
