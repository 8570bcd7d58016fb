"""Hostile and careless inputs against what fvbench writes (issue 17, round two): planted symlinks, colliding video
names, overwrites of a run's own files, missing output folders, lost videos, refused runs, read-only archives, Ctrl-C.

Each test reproduces one case of the issue and checks that nothing already stored (or outside the run) changed.
"""

import glob
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fvbench import load_results
from fvbench.cli import main

REPO = Path(__file__).resolve().parents[1]
TINY = ["--presets", "tiny-flashvideo", "--stage1-nfe", "1", "--stage2-nfe", "1", "--metrics", "none", "--no-warmup"]
CONFIG = "tiny-flashvideo_s1-1_s2-1"


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished run (two cascade videos and their previews) and a baseline written from it."""
    base = tmp_path_factory.mktemp("finished")
    prompts = base / "p.txt"
    prompts.write_text("a red cat\na blue dog\n")
    run = base / "run"
    assert main(["run", "--suite", str(prompts), *TINY, "--out", str(run)]) == 0
    baseline = base / "baseline.yaml"
    assert main(["check", str(run), "--baseline", str(baseline), "--update"]) == 0
    return prompts, run, baseline


def _copy(run: Path, dest: Path) -> Path:
    shutil.copytree(run, dest, symlinks=True)
    return dest


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_planted_symlinks_in_a_run_folder_redirect_no_write(finished, tmp_path, capsys):
    _, run, baseline = finished
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    outside = tmp_path / "outside"
    outside.mkdir()

    r1 = _copy(run, tmp_path / "r1")  # RUN/report/plot0.png -> ../../victim.txt
    (r1 / "report").mkdir()
    os.symlink("../../victim.txt", r1 / "report" / "plot0.png")
    assert main(["report", str(r1)]) == 2
    assert "symlink" in capsys.readouterr().err

    r2 = _copy(run, tmp_path / "r2")  # RUN/report -> a folder outside
    os.symlink(outside, r2 / "report")
    assert main(["report", str(r2)]) == 2
    assert main(["export", str(r2), "--format", "csv", "--out", str(r2 / "report" / "rows.csv")]) == 2
    assert "symlink" in capsys.readouterr().err

    r3 = _copy(run, tmp_path / "r3")  # RUN/check.xml -> ../victim.txt (the default JUnit path)
    os.symlink("../victim.txt", r3 / "check.xml")
    assert main(["check", str(r3), "--baseline", str(baseline)]) == 2
    assert "symlink" in capsys.readouterr().err

    r4 = tmp_path / "r4"  # RUN/results.sqlite -> ../outside.sqlite
    r4.mkdir()
    os.symlink("../outside.sqlite", r4 / "results.sqlite")
    prompts = finished[0]
    assert main(["run", "--suite", str(prompts), *TINY, "--out", str(r4)]) == 2
    assert "symlink" in capsys.readouterr().err
    assert main(["report", str(r4)]) == 2

    assert victim.read_text() == "precious" and list(outside.iterdir()) == []
    assert not (tmp_path / "outside.sqlite").exists()


def test_prompts_with_the_same_text_are_refused_before_any_work(tmp_path, capsys):
    suite = tmp_path / "dup.yaml"
    suite.write_text("prompts:\n  - {id: a, text: a red cat}\n  - {id: b, text: a red cat}\n")
    lines = tmp_path / "dup.txt"
    lines.write_text("a red cat\na blue dog\na red cat\n")
    for path in (suite, lines):
        assert main(["run", "--suite", str(path), *TINY, "--out", str(tmp_path / "r")]) == 2
        err = capsys.readouterr().err
        assert "same text" in err and "--samples" in err
    assert not (tmp_path / "r").exists()


def test_a_rerun_with_another_seed_cannot_replace_stored_videos(finished, tmp_path, capsys):
    prompts, run, _ = finished
    r = _copy(run, tmp_path / "r")
    before = _files(r / "videos") | _files(r / "previews")
    assert main(["run", "--suite", str(prompts), *TINY, "--seed", "1", "--out", str(r)]) == 2
    err = capsys.readouterr().err
    assert "shared by two different units" in err and "seed 1" in err
    assert _files(r / "videos") | _files(r / "previews") == before and len(load_results(r)) == 2


def test_export_and_run_never_overwrite_a_run_or_a_users_files(finished, tmp_path, capsys):
    prompts, run, _ = finished
    r = _copy(run, tmp_path / "r")
    other_store = _copy(run, tmp_path / "other") / "results.sqlite"
    stored = _files(r) | {"other": other_store.read_bytes()}
    for target in (r / "results.sqlite", r / "run.json", r / "videos" / CONFIG / "a red cat-0.mp4", other_store):
        assert main(["export", str(r), "--format", "csv", "--out", str(target)]) == 2
        err = capsys.readouterr().err
        assert "refusing to overwrite" in err and "choose another --out" in err
    assert _files(r) | {"other": other_store.read_bytes()} == stored
    assert main(["export", str(r), "--format", "csv", "--out", str(r / "rows.csv")]) == 0  # a new file is fine

    mine = tmp_path / "mine"  # a folder of the user's own files, not a run folder
    (mine / "videos" / CONFIG).mkdir(parents=True)
    (mine / "run.json").write_text("my notes")
    (mine / "videos" / CONFIG / "a red cat-0.mp4").write_text("my video")
    assert main(["run", "--suite", str(prompts), *TINY, "--out", str(mine)]) == 2
    err = capsys.readouterr().err
    assert "not an fvbench run folder" in err and "new --out" in err
    assert _files(mine) == {"run.json": b"my notes", f"videos/{CONFIG}/a red cat-0.mp4": b"my video"}


def test_output_paths_in_a_missing_folder_are_one_line_errors(finished, tmp_path, capsys):
    _, run, baseline = finished
    missing = tmp_path / "no" / "such"
    for args in (["export", str(run), "--out", str(missing / "rows.csv")],
                 ["check", str(run), "--baseline", str(missing / "b.yaml"), "--update"],
                 ["check", str(run), "--baseline", str(baseline), "--junit", str(missing / "j.xml")]):
        assert main(args) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and "does not exist" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "no").exists()
    junit = tmp_path / "j.xml"  # every check passes: the exit code says so
    assert main(["check", str(run), "--baseline", str(baseline), "--junit", str(junit)]) == 0
    assert 'failures="0"' in junit.read_text()


def test_a_deleted_or_changed_video_is_reported_scored_around_and_generated_again(finished, tmp_path, capsys):
    prompts, run, _ = finished
    r = _copy(run, tmp_path / "r")
    final = r / "videos" / CONFIG / "a red cat-0.mp4"
    preview = r / "previews" / CONFIG / "a red cat-0.mp4"
    original = final.read_bytes()
    final.unlink()
    capsys.readouterr()
    assert main(["report", str(r)]) == 0
    md = (r / "report" / "report.md").read_text()
    assert "video missing on disk" in md and f"videos/{CONFIG}/a red cat-0.mp4 is missing" in md
    assert main(["score", str(r), "--metrics", "temporal_flickering"]) == 0
    out = capsys.readouterr()
    assert "1 video(s) missing or changed on disk are not scored" in out.err and "scored 1 videos" in out.out

    assert main(["run", "--suite", str(prompts), *TINY, "--out", str(r)]) == 0
    out = capsys.readouterr().out
    assert "done: 1 new, 1 already stored" in out and "1 stored video(s) were missing or changed" in out
    assert final.read_bytes() == original  # the same deterministic video, back in place

    preview.write_bytes(preview.read_bytes()[:100])  # truncated: same name, another size
    assert main(["run", "--suite", str(prompts), *TINY, "--out", str(r)]) == 0
    assert "changed on disk" in capsys.readouterr().out
    assert preview.stat().st_size > 100
    row = load_results(r).set_index("prompt").loc["a red cat"]
    assert row.attempts == 3 and row.s1_video_bytes == preview.stat().st_size


def test_a_refused_run_loads_no_model(finished, tmp_path, monkeypatch, capsys):
    from fvbench.runfiles import RunLock
    from fvbench.worker import GroupWorker

    prompts, run, _ = finished
    loaded = []

    def components(self, base):
        loaded.append(base)
        raise RuntimeError("a model was loaded before the run folder was checked")

    monkeypatch.setattr(GroupWorker, "components", components)
    r = _copy(run, tmp_path / "r")
    more = [*TINY, "--stage2-nfe", "2"]  # the last one wins: units still to do
    with RunLock(r):  # another fvbench process holds the folder
        assert main(["run", "--suite", str(prompts), *more, "--out", str(r)]) == 2
    assert "another fvbench process" in capsys.readouterr().err
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    assert main(["run", "--suite", str(prompts), *more, "--out", str(tmp_path / "mine")]) == 2
    assert loaded == []


def _cli_read_only(run: Path, args: list[str]) -> subprocess.CompletedProcess:
    """The CLI in a subprocess that sees ``run`` read-only: a private read-only bind mount as root (where permission
    bits do not stop writes), the folder's write bits removed otherwise."""
    cmd = [sys.executable, "-m", "fvbench.cli", *map(str, args)]
    env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1")
    if os.geteuid() == 0:
        cmd = ["unshare", "-m", "sh", "-c", 'mount --bind -o ro "$0" "$0" && exec "$@"', str(run), *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=str(REPO), timeout=300)


def test_a_read_only_archived_run_can_be_reported_and_exported_elsewhere(finished, tmp_path):
    _, run, baseline = finished
    r = _copy(run, tmp_path / "r")
    if os.geteuid() == 0:
        probe = subprocess.run(["unshare", "-m", "sh", "-c", 'mount --bind -o ro "$0" "$0" && touch "$0/x"', str(r)],
                               capture_output=True, text=True)
        if "Read-only" not in probe.stderr:
            pytest.skip(f"cannot make a read-only mount here: {probe.stderr.strip()}")
    else:
        for p in [r, *r.rglob("*")]:
            p.chmod(p.stat().st_mode & ~0o222)
    stored = _files(r)
    out = tmp_path / "out"
    out.mkdir()
    res = _cli_read_only(r, ["report", r, "--out", out / "report"])
    assert res.returncode == 0, res.stderr
    assert (out / "report" / "index.html").is_file() and "a red cat" in (out / "report" / "index.html").read_text()
    res = _cli_read_only(r, ["export", r, "--format", "csv", "--out", out / "rows.csv"])
    assert res.returncode == 0, res.stderr
    assert "a red cat" in (out / "rows.csv").read_text()
    res = _cli_read_only(r, ["report", r])  # its default folder is inside the read-only run
    assert res.returncode == 2 and "read-only" in res.stderr and "--out" in res.stderr
    res = _cli_read_only(r, ["check", r, "--baseline", baseline, "--junit", out / "j.xml"])
    assert res.returncode == 0, res.stderr
    assert _files(r) == stored


FORK_INTERRUPT = """
import os, signal, sys
import numpy as np
from fvbench.video import write_mp4

armed = [True]


def interrupt_inside_fork():  # Ctrl-C arriving while ffmpeg is being forked
    if armed and armed.pop():
        os.kill(os.getpid(), signal.SIGINT)


os.register_at_fork(before=interrupt_inside_fork)
try:
    write_mp4(np.zeros((4, 16, 16, 3), np.uint8), sys.argv[1])
    print("went on")
except KeyboardInterrupt:
    print("interrupted")
"""


def test_ctrl_c_while_ffmpeg_starts_is_not_swallowed(tmp_path):
    """A KeyboardInterrupt raised inside fork()'s hooks is printed as "Exception ignored" and lost: the run went on."""
    env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1")
    res = subprocess.run([sys.executable, "-c", FORK_INTERRUPT, str(tmp_path / "v.mp4")], capture_output=True,
                         text=True, env=env, cwd=str(REPO), timeout=120)
    assert res.stdout.strip() == "interrupted" and "Exception ignored" not in res.stderr, res.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["v.mp4"]  # the write finished whole, then the interrupt


def test_ctrl_c_during_a_write_that_then_fails_is_still_an_interrupt(tmp_path):
    """The Ctrl-C also kills children (imageio-ffmpeg's ffmpeg -version probe): the error that follows must not hide it
    (it failed one video as an ordinary error, and the run went on)."""
    from fvbench.runfiles import atomic_output

    with pytest.raises(KeyboardInterrupt):
        with atomic_output(tmp_path / "x.mp4"):
            os.kill(os.getpid(), signal.SIGINT)
            raise RuntimeError("No ffmpeg exe could be found")
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_while_a_video_is_written_stops_the_run_cleanly(tmp_path):
    """End to end: Ctrl-C (to the whole process group) while a video is being written."""
    prompts = tmp_path / "p.txt"
    prompts.write_text("\n".join(f"prompt number {i}" for i in range(6)) + "\n")
    out = tmp_path / "r"
    env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1")
    proc = subprocess.Popen([sys.executable, "-m", "fvbench.cli", "run", "--suite", str(prompts), *TINY,
                             "--out", str(out)], env=env, cwd=str(REPO), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None and not glob.glob(f"{out}/*/*/.tmp-*"):
            time.sleep(0.001)
        assert proc.poll() is None, "the run ended before a video was being written"
        time.sleep(0.02)  # into the write, where ffmpeg is forked
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal sends: the whole foreground group
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130 and "aborted" in err, err
    assert "Traceback" not in err and "Exception ignored" not in err
    assert glob.glob(f"{out}/**/.tmp-*", recursive=True) == []
    assert len(load_results(out)) < 6
