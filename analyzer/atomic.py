"""Atomic file writes: a file appears under its name complete and on disk, or not at all.

Every writer of a file that a reader or a later run may open goes through :func:`atomic_path` (or its
conveniences :func:`atomic_open` and :func:`atomic_write_bytes`): the data goes to ``PATH.tmp-PID`` next to
the target (the name :meth:`analyzer.workspace.Workspace` recovery removes after a killed run), which is
fsynced, renamed over ``PATH`` and followed by an fsync of the folder, so that neither a crash nor a reader
ever sees half a file.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

from analyzer.checkpoints import checkpoint

__all__ = ["atomic_open", "atomic_path", "atomic_write_bytes", "fsync_dir"]


def fsync_dir(path: str) -> None:
    """Flush a folder's entries (a rename in it) to disk; a no-op where folders cannot be opened."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _fsync_file(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[str]:
    """Yield a temporary path next to ``path`` for the block to write (by any means, e.g. a library that
    takes a file name); when the block ends without error, fsync that file, rename it over ``path`` and fsync
    the folder. On error the temporary file is removed and ``path`` is left as it was; so it is when the block
    removes the temporary file itself (nothing worth keeping was written). The folder is created if needed.
    """
    target = os.fspath(path)
    folder = os.path.dirname(target) or "."
    os.makedirs(folder, exist_ok=True)
    tmp = f"{target}.tmp-{os.getpid()}"
    try:
        yield tmp
        if os.path.exists(tmp):
            _fsync_file(tmp)
            os.replace(tmp, target)
            fsync_dir(folder)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


@contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "wb", **kwargs: Any) -> Iterator[IO[Any]]:
    """``open(path, mode, **kwargs)`` for writing, made atomic with :func:`atomic_path`."""
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as fh:
        yield fh


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_open(path, "wb") as fh:
        fh.write(data)
        checkpoint("export.before_rename")
