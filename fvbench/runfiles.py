"""The run folder: its lock, the `latest` pointer, and prompt -> file names that cannot escape or collide.

Layout: ``RUN/results.sqlite``, ``RUN/run.json`` (plan and provenance), ``RUN/videos/<config>/<name>.mp4`` (final
videos, VBench naming ``{prompt}-{i}.mp4`` where the prompt allows it), ``RUN/previews/<config>/...`` (stage-I
videos of cascades). ``RUNS/latest`` is a text file holding the newest run folder's name (no symlinks).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import signal
import sys
import tempfile
import threading
import unicodedata
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from fvbench.errors import FvbenchError

NAME_MAX_BYTES = 255
TMP_PREFIX = ".tmp-"
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
RUN_OWNED = ("results.sqlite", "results.sqlite-wal", "results.sqlite-shm", "results.sqlite-journal", "run.json", ".lock",
             "results.columns.arrow")
RUN_OWNED_FOLDERS = ("videos", "previews", "vbench")  # everything under these belongs to the run's rows


def _plain_folder(path: Path) -> None:
    if path.is_symlink():
        raise FvbenchError(f"refusing to write through a symlink: {path}")
    if not path.is_dir():
        raise FvbenchError(f"refusing to write through {path}: not a plain folder")


def _plain_file_or_absent(path: Path) -> None:
    if path.is_symlink():
        raise FvbenchError(f"refusing to write through a symlink: {path}")
    if path.exists() and not path.is_file():
        raise FvbenchError(f"refusing to replace {path}: not a regular file")


def safe_path(root: Path, *parts: str) -> Path:
    """``root/parts...`` after checking no component is a symlink or escapes ``root`` (folders created as needed).

    ``root`` must be a plain folder; every folder on the way is created or re-checked (a planted symlink is refused,
    never followed) and the last component, if it exists, must be a regular file. This is the one check every write
    into a run folder (and into a report folder) goes through; write with :func:`atomic_output`.
    """
    root = Path(root)
    _plain_folder(root)
    real_root = root.resolve()
    current = root
    for i, part in enumerate(parts):
        if part in ("", ".", "..") or "/" in part or "\x00" in part:
            raise FvbenchError(f"refusing unsafe path component {part!r} under {root}")
        current = current / part
        if current.is_symlink():
            raise FvbenchError(f"refusing to write through a symlink: {current}")
        if i < len(parts) - 1:
            try:
                current.mkdir(exist_ok=True)  # parallel workers may create the same folder at the same moment
            except OSError as e:
                raise FvbenchError(f"cannot create folder {current}: {e.strerror}") from None
            _plain_folder(current)
    _plain_file_or_absent(current)
    if not str(current.resolve()).startswith(str(real_root) + os.sep):
        raise FvbenchError(f"refusing to write outside the run folder: {current}")
    return current


def safe_dir(root: Path, *parts: str) -> Path:
    """The folder ``root/parts...``, created if needed, with the same symlink checks as :func:`safe_path`."""
    folder = safe_path(root, *parts, "_").parent
    _plain_folder(folder)
    return folder


@contextmanager
def _interrupt_after() -> Iterator[None]:
    """Hold a Ctrl-C until the block ends, then raise it (a second Ctrl-C interrupts at once).

    A KeyboardInterrupt raised inside ``fork()``'s at-fork hooks (ffmpeg starting) is printed as "Exception ignored"
    and lost, and one that kills a child (imageio-ffmpeg's ``ffmpeg -version`` probe) surfaced as an ordinary error
    that failed one video while the run went on; holding it keeps a write whole and the interrupt honoured. Main
    thread only (signal handlers cannot be set elsewhere).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    got: list[int] = []

    def hold(signum, frame) -> None:
        got.append(signum)
        if len(got) > 1:
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, hold)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if got:  # also when the block failed: the Ctrl-C may be why (it also kills children, e.g. ffmpeg -version)
            raise KeyboardInterrupt


@contextmanager
def atomic_output(path: Path) -> Iterator[Path]:
    """A fresh temporary file beside ``path`` for the caller to fill; renamed over ``path`` when the block succeeds.

    The temporary is created exclusively (``mkstemp``: a planted file or link of that name is never opened) and keeps
    ``path``'s suffix (writers pick formats by it). ``path`` is checked before and again just before the rename: a
    symlink or a non-file there is refused. The rename replaces a name, never writes through it. A Ctrl-C waits for
    the write to finish; on any failure the temporary is removed (stale ones of killed processes: :func:`remove_temps`).
    """
    path = Path(path)
    _plain_file_or_absent(path)
    with _interrupt_after():
        try:
            fd, name = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=path.suffix, dir=path.parent)
        except OSError as e:
            raise FvbenchError(f"cannot write in {path.parent}: {e.strerror}") from None
        os.close(fd)
        tmp = Path(name)
        try:
            yield tmp
            _plain_file_or_absent(path)
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        finally:
            if os.path.lexists(tmp):
                os.unlink(tmp)


def remove_temps(run_dir: Path) -> int:
    """Remove temporaries a killed writer left in a run folder's video folders, and of the store's column file
    (``results.columns.arrow``) in the folder itself (call under the run's lock)."""
    n = 0
    for pattern in (*(f"{folder}/*/{TMP_PREFIX}*" for folder in RUN_OWNED_FOLDERS[:2]), f"{TMP_PREFIX}*.arrow"):
        for tmp in Path(run_dir).glob(pattern):
            tmp.unlink()
            n += 1
    return n


def write_atomic(path: Path, data: bytes | str) -> Path:
    """Write ``data`` to ``path`` through :func:`atomic_output` (text as UTF-8)."""
    with atomic_output(path) as tmp:
        tmp.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return Path(path)


def run_folder_of(path: Path) -> Path | None:
    """The run folder (a folder holding ``results.sqlite``) that ``path`` lies in, looking at its parents as written."""
    for folder in Path(os.path.abspath(path)).parents:
        if (folder / RUN_OWNED[0]).exists() or (folder / RUN_OWNED[0]).is_symlink():
            return folder
    return None


def output_file(path: Path, option: str) -> Path:
    """Check a file path the user named for an output (``--out``, ``--junit``, ``--update``) before any work.

    Its folder must exist (nothing is created on a typo); a symlink, a folder, an existing SQLite store, or a file a
    run folder owns (its store, ``run.json``, lock, anything under videos/, previews/, vbench/) is refused; a path inside
    a run folder also goes through :func:`safe_path` (no symlinked folder on the way). Returns the path to write
    with :func:`atomic_output`.
    """
    path = Path(path)
    parent = path.parent
    if not parent.is_dir():
        raise FvbenchError(f"{option} {path}: folder {parent} does not exist; create it first (mkdir -p {parent}) "
                           f"or choose another path")
    _plain_file_or_absent(path)
    if path.is_file():
        with open(path, "rb") as f:
            if f.read(16) == b"SQLite format 3\x00":
                raise FvbenchError(f"refusing to overwrite {path}: it is an SQLite database (a run's store?); "
                                   f"choose another {option}")
    run = run_folder_of(path)
    if run is not None:
        rel = Path(os.path.abspath(path)).relative_to(run)
        if rel.parts[0] in RUN_OWNED_FOLDERS or (len(rel.parts) == 1 and rel.name in RUN_OWNED):
            raise FvbenchError(f"refusing to overwrite {path}: it belongs to the run folder {run}; "
                               f"choose another {option}")
        path = safe_path(run, *rel.parts)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise FvbenchError(f"{option} {path}: folder {parent} is not writable; choose another path")
    return path


def output_dir(path: Path, option: str) -> Path:
    """A folder the user named for outputs (``report --out``): created with its parents, never through a symlink."""
    path = Path(path)
    run = run_folder_of(path / "_")
    if run is not None and Path(os.path.abspath(path)) != run:
        rel = Path(os.path.abspath(path)).relative_to(run)
        if rel.parts[0] in RUN_OWNED_FOLDERS:
            raise FvbenchError(f"refusing to write into {path}: it belongs to the run folder {run}; choose another "
                               f"{option}")
        return safe_dir(run, *rel.parts)
    if path.is_symlink():
        raise FvbenchError(f"{option} {path} is a symlink: name the real folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise FvbenchError(f"cannot create {option} folder {path}: {e.strerror}") from None
    _plain_folder(path)
    return path


class RunLock:
    """An exclusive lock on a run folder; a second ``fvbench run`` on the same folder refuses with a clear message."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / ".lock"
        self.fd: int | None = None

    def __enter__(self) -> "RunLock":
        if self.path.is_symlink():
            raise FvbenchError(f"refusing to use a symlinked lock file {self.path}")
        try:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
        except OSError as e:
            raise FvbenchError(f"cannot lock {self.path.parent} ({e.strerror}): this command writes to the run "
                               f"folder; copy it somewhere writable") from None
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
    """Create the run folder (and parents), or check an existing one, failing with a one-line error.

    An existing folder must be an fvbench run folder (it holds ``results.sqlite``) or empty: a run never writes its
    ``run.json`` and videos into a folder of someone else's files. The names a run writes at its top (store, run.json,
    lock, videos/, previews/, report/, vbench/) must not be symlinks.
    """
    run_dir = Path(run_dir)
    if run_dir.is_symlink():
        raise FvbenchError(f"refusing to use a symlink as run folder: {run_dir}")
    if run_dir.exists():
        if not run_dir.is_dir():
            raise FvbenchError(f"run folder {run_dir} is a file; choose another --out")
        entries = {p.name for p in run_dir.iterdir()}
        if entries - {".lock"} and not ({RUN_OWNED[0]} & entries):
            raise FvbenchError(f"{run_dir} is not empty and is not an fvbench run folder (no {RUN_OWNED[0]}): fvbench "
                               f"will not write its run.json and videos among other files; choose a new --out folder "
                               f"(it is created) or an empty one")
        for name in (*RUN_OWNED, *RUN_OWNED_FOLDERS, "report"):
            if (run_dir / name).is_symlink():
                raise FvbenchError(f"refusing to use run folder {run_dir}: {run_dir / name} is a symlink "
                                   f"(writes through it would land outside the run folder); remove it")
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
    write_atomic(runs_dir / LATEST, str(rel) + "\n")


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
