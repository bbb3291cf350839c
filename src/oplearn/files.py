"""Files that appear whole or not at all: write beside the target, flush to disk, rename onto it."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path


def fsync_path(path: str | os.PathLike) -> None:
    """Flush a file or directory to the disk, ignoring filesystems that refuse."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a scratch path beside ``path``; when the block succeeds the scratch file is flushed and renamed
    onto ``path``, when it fails the scratch file is removed and ``path`` is untouched.

    ``suffix`` ends the scratch name (``".png"`` for writers that choose a format by extension).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(f"{path.name}.partial{suffix}")
    try:
        yield scratch
        fsync_path(scratch)
        os.replace(scratch, path)
    except BaseException:
        scratch.unlink(missing_ok=True)
        raise
    fsync_path(path.parent)


def write_atomic(path: str | os.PathLike, data: str | bytes) -> Path:
    """Write text or bytes to ``path`` atomically; returns the path."""
    with atomic_path(path) as scratch:
        if isinstance(data, str):
            scratch.write_text(data)
        else:
            scratch.write_bytes(data)
    return Path(path)
