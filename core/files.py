"""Writing files safely: output locations checked before any work starts (one-line errors), and atomic writes
(a temporary file in the same directory renamed over the target) whose leftovers from killed processes are
cleaned up. Temporary files are named ``.<target>.<pid>.<random>.dream-explorer.tmp``; those of processes that
no longer run are deleted at the next write to the same target.
"""

from __future__ import annotations

import glob
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from core.errors import OutputError


def _probe_directory(directory: Path, what: str, target: Path) -> None:
    """Create and delete a file in the nearest existing ancestor of ``directory`` (``os.access`` says yes to
    root on a read-only mount). Raises OutputError naming ``target``."""
    ancestor = directory
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise OutputError(f"cannot write {what} {target}: {ancestor} is a file, not a directory")
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-check.", dir=ancestor)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutputError(f"cannot write {what} {target}: {ancestor} is not writable ({exc.strerror})") from None


def check_output_file(path: str | os.PathLike[str], what: str = "output") -> None:
    """Check, before any work, that a file can be written at ``path`` (atomically, by :func:`atomic_path`).
    Nothing is created.

    Raises:
        OutputError: ``path`` is a directory, a path component is a file, or the directory is not writable.
    """
    target = Path(path)
    if target.is_dir():
        raise OutputError(f"cannot write {what} {target}: it is a directory; give a file path")
    _probe_directory(target.parent, what, target)


def check_output_dir(path: str | os.PathLike[str], what: str = "output directory") -> None:
    """Check, before any work, that files can be written in the directory ``path`` (made later if missing).
    Nothing is created.

    Raises:
        OutputError: ``path`` or a component of it is a file, or it (or its nearest existing ancestor) is not
            writable.
    """
    target = Path(path)
    if target.exists() and not target.is_dir():
        raise OutputError(f"cannot write {what} {target}: it is a file, not a directory")
    _probe_directory(target, what, target)


TMP_SUFFIX = ".dream-explorer.tmp"
"""Ending of every temporary file :func:`atomic_path` makes (``.<target name>.<pid>.<random>`` before it)."""


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def stale_temporary_files(path: str | os.PathLike[str]) -> list[Path]:
    """Temporary files of :func:`atomic_path` for target ``path`` whose writing process no longer runs (killed
    mid-write). Files of live processes, this one included, are never listed."""
    target = Path(path)
    prefix = f".{target.name}."
    stale = []
    for name in glob.glob(glob.escape(str(target.parent / prefix)) + "*" + TMP_SUFFIX):
        pid_text = Path(name).name[len(prefix) :].split(".", 1)[0]
        if pid_text.isdigit() and int(pid_text) != os.getpid() and not _process_alive(int(pid_text)):
            stale.append(Path(name))
    return sorted(stale)


def _remove_stale_temporary_files(target: Path) -> None:
    for stale in stale_temporary_files(target):
        try:
            stale.unlink()
        except OSError:
            pass  # gone already (another writer cleaned it), or not ours to delete


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it over ``path``, else delete it.

    Temporary files left by killed writers of the same target (see :func:`stale_temporary_files`) are deleted
    first.

    Raises:
        OutputError: the directory cannot be made or written, or the disk filled up; ``path`` keeps its
            previous contents.
    """
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_temporary_files(target)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.{os.getpid()}.", suffix=TMP_SUFFIX, dir=target.parent)
        os.close(fd)
    except OSError as exc:
        raise OutputError(f"cannot write {target}: {exc.strerror or exc}") from None
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o644)
        os.replace(tmp_path, target)
    except OSError as exc:
        raise OutputError(f"cannot write {target}: {exc.strerror or exc}; its previous contents are kept") from None
    finally:
        if tmp_path.exists():
            tmp_path.unlink()
