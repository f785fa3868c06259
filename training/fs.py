"""File-system helpers: one-line causes of file-system failures (a full disk, a read-only folder, a file where a
folder should be), writes that never leave a half-written file, and a lock for read-modify-write of shared files.

Used wherever the project writes (checkpoints, run folders, ``eval.py`` outputs, comparison tables) so that every such
failure is one line naming the path and the cause instead of a traceback.
"""
from __future__ import annotations

import errno
import fcntl
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

_CAUSES = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded",
           errno.EACCES: "permission denied", errno.EPERM: "permission denied",
           errno.EROFS: "read-only file system", errno.EISDIR: "is a folder"}


def _file_in_the_way(path: Path) -> Path | None:
    """The nearest of ``path`` and its parents that exists as something other than a folder, if any."""
    for candidate in (path, *path.parents):
        if candidate.exists() or candidate.is_symlink():
            return None if candidate.is_dir() else candidate
    return None


def replace_through_temporary(path: Path, write: Callable[[BinaryIO], None], *, suffix: str = ".tmp",
                              mode: int | None = None) -> None:
    """Calls ``write(file)`` on a temporary file ``.<name>.<random><suffix>`` beside ``path`` (permissions ``mode``
    when given, else mkstemp's 0600), then renames it onto ``path``: a reader sees the old file or the whole new one,
    never half of it. On any error the temporary file is removed and the error re-raised."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Holds an exclusive advisory lock (``flock``) on the file ``path``, created with its folders if missing, for the
    ``with`` body: processes taking the same lock run their bodies one at a time. The OS releases it if the process
    dies. For a read-modify-write of a file that concurrent processes share (a table two sittings add rows to). Not
    re-entrant: taking it again inside the body, even in the same process, blocks forever."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def os_error_cause(err: OSError, path: str | Path) -> str:
    """Lower-case cause of ``err`` raised while writing at ``path``, e.g. ``'no space left on device'``."""
    blocker = _file_in_the_way(Path(path).parent) if not isinstance(err, IsADirectoryError) else None
    if blocker is not None or isinstance(err, (NotADirectoryError, FileExistsError)):
        return f"{blocker or err.filename} exists and is not a folder"
    return _CAUSES.get(err.errno, (err.strerror or str(err)).lower())


def writable_problem(path: str | Path, *, folder: bool) -> str | None:
    """Why files cannot be written at ``path`` (a folder to write into, or a file when ``folder`` is False).

    Creates the missing folders (as the later write would) and a temporary file, removed at once; returns None
    when that works.
    """
    path = Path(path)
    if folder and path.exists() and not path.is_dir():
        return "exists and is not a folder"
    if not folder and path.is_dir():
        return "is a folder (give a file name)"
    target = path if folder else path.parent
    try:
        target.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=target):
            pass
    except OSError as err:
        return os_error_cause(err, target / "probe")
    return None
