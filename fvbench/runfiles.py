"""The run folder: its lock, the `latest` pointer, and prompt -> file names that cannot escape or collide.

Layout: ``RUN/results.sqlite``, ``RUN/run.json`` (plan and provenance), ``RUN/videos/<config>/<name>.mp4`` (final
videos, VBench naming ``{prompt}-{i}.mp4`` where the prompt allows it), ``RUN/previews/<config>/...`` (stage-I
videos of cascades). ``RUNS/latest`` is a text file holding the newest run folder's name (no symlinks).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import sys
import unicodedata
from pathlib import Path

from fvbench.errors import FvbenchError

NAME_MAX_BYTES = 255
LATEST = "latest"


def vbench_file_name(prompt: str, sample: int) -> tuple[str, bool]:
    """File name for (prompt, sample) and whether it is VBench's own ``{prompt}-{sample}.mp4``.

    The raw prompt is used only when it is safe: no '/', NUL or control characters, not starting with '.', '-' or
    '_', already NFC-normalised (so two prompts that normalise alike cannot share a name), short enough for the
    file system and encodable in its file-name encoding. Otherwise the name is ``_p-<sha256 of the prompt>-<sample>.mp4`` (never a raw name, which cannot
    start with '_'), and the exact prompt stays in the store.
    """
    name = f"{prompt}-{sample}.mp4"
    safe = (
        prompt.strip() == prompt and prompt != ""
        and not prompt.startswith((".", "-", "_"))
        and "/" not in prompt and "\\" not in prompt
        and not any(unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn") for ch in prompt)
        and unicodedata.normalize("NFC", prompt) == prompt
        and len(name.encode("utf-8")) <= NAME_MAX_BYTES
        and _encodable(name)
    )
    if safe:
        return name, True
    return f"_p-{hashlib.sha256(prompt.encode('utf-8', 'surrogatepass')).hexdigest()[:32]}-{sample}.mp4", False


def _encodable(name: str) -> bool:
    """Whether this system can write ``name`` as a file name (not under an ASCII locale with UTF-8 mode off, e.g.
    ``LANG=C PYTHONUTF8=0 PYTHONCOERCECLOCALE=0``, when it holds non-ASCII characters)."""
    try:
        name.encode(sys.getfilesystemencoding(), "strict")
    except UnicodeEncodeError:
        return False
    return True


def safe_path(root: Path, *parts: str) -> Path:
    """``root/parts...`` after checking no component is a symlink or escapes ``root`` (folders created as needed)."""
    root = Path(root)
    real_root = root.resolve()
    current = root
    for i, part in enumerate(parts):
        if part in ("", ".", "..") or "/" in part or "\x00" in part:
            raise FvbenchError(f"refusing unsafe path component {part!r} under {root}")
        current = current / part
        if current.is_symlink():
            raise FvbenchError(f"refusing to write through a symlink: {current}")
        if i < len(parts) - 1:
            current.mkdir(exist_ok=True)  # parallel workers may create the same folder at the same moment
            if current.is_symlink() or not current.is_dir():
                raise FvbenchError(f"refusing to write through {current}: not a plain folder")
    if not str(current.resolve()).startswith(str(real_root) + os.sep):
        raise FvbenchError(f"refusing to write outside the run folder: {current}")
    return current


class RunLock:
    """An exclusive lock on a run folder; a second ``fvbench run`` on the same folder refuses with a clear message."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / ".lock"
        self.fd: int | None = None

    def __enter__(self) -> "RunLock":
        if self.path.is_symlink():
            raise FvbenchError(f"refusing to use a symlinked lock file {self.path}")
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.fd)
            self.fd = None
            raise FvbenchError(f"another fvbench process is using {self.path.parent} (lock {self.path}); "
                               f"wait for it to finish or use another --out") from None
        os.ftruncate(self.fd, 0)
        os.write(self.fd, str(os.getpid()).encode())
        return self

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


def prepare_run_dir(run_dir: Path) -> Path:
    """Create the run folder (and parents) or fail with a one-line error if it cannot be written."""
    run_dir = Path(run_dir)
    if run_dir.is_symlink():
        raise FvbenchError(f"refusing to use a symlink as run folder: {run_dir}")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise FvbenchError(f"cannot create run folder {run_dir}: {e.strerror}") from None
    if not os.access(run_dir, os.W_OK | os.X_OK):
        raise FvbenchError(f"run folder {run_dir} is not writable")
    return run_dir


def write_latest(runs_dir: Path, run_dir: Path) -> None:
    """Record ``run_dir`` as the latest run under ``runs_dir`` (atomic replace of a small text file)."""
    runs_dir = Path(runs_dir)
    try:
        rel = Path(run_dir).resolve().relative_to(runs_dir.resolve())
    except ValueError:
        return  # the run is not under the default runs folder: leave `latest` alone
    pointer = runs_dir / LATEST
    if pointer.is_symlink():
        raise FvbenchError(f"refusing to write through a symlink: {pointer}")
    tmp = runs_dir / f".{LATEST}.{os.getpid()}"
    tmp.write_text(str(rel) + "\n", encoding="utf-8")
    os.replace(tmp, pointer)


def latest_run(runs_dir: Path) -> Path:
    """The run folder recorded as latest under ``runs_dir``."""
    pointer = Path(runs_dir) / LATEST
    if not pointer.is_file():
        raise FvbenchError(f"no run found under {runs_dir} (no {pointer}); run `fvbench run` first or pass RUN_DIR")
    name = pointer.read_text(encoding="utf-8").strip()
    run = Path(runs_dir) / name
    if not name or ".." in Path(name).parts or not run.is_dir():
        raise FvbenchError(f"{pointer} points to {name!r}, which is not a run folder under {runs_dir}")
    return run
