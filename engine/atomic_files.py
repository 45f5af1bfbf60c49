"""Atomic file writes: a file appears under its final name complete, or not at all.

The bytes go to a hidden temporary file in the same folder (`.NAME.XXXX.partial`), are flushed and
synced, then the file is renamed into place. A crash mid-write leaves at most a `.partial` file,
never a torn file under the real name; a failed write (a full disk) removes its temporary and the
error names the path.
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from engine.errors import DiffgraphError

PARTIAL_SUFFIX = ".partial"


class FileWriteError(DiffgraphError):
    """A file could not be written (full disk, read-only folder, permissions); names the path."""

    code = "file_write_failed"


def is_partial(name: str) -> bool:
    """True for the temporary name of a write in progress (or one a crash interrupted)."""
    return name.startswith(".") and name.endswith(PARTIAL_SUFFIX)


def _describe(exc: OSError) -> str:
    if exc.errno == errno.ENOSPC:
        return "the disk is full"
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return "the folder is read-only or not writable"
    return exc.strerror or str(exc)


def atomic_write(target: Path, write: Callable[[IO[bytes]], Any], *, replace: bool = True) -> Path:
    """Write target through `write(handle)` atomically; returns target.

    replace=False never overwrites: FileExistsError is raised when target exists (exclusive create).
    Other OS errors become FileWriteError naming target.
    """
    target = Path(target)
    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name[:64]}.", suffix=PARTIAL_SUFFIX)
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        if replace:
            os.replace(tmp, target)
        else:
            _link_exclusive(tmp, target)
        tmp = None
        return target
    except FileExistsError:
        raise
    except OSError as exc:
        raise FileWriteError(f"cannot write {target}: {_describe(exc)} ({exc.strerror})") from exc
    finally:
        if tmp is not None:
            _remove(tmp)


def atomic_write_bytes(target: Path, data: bytes, *, replace: bool = True) -> Path:
    """atomic_write for bytes already in memory."""
    return atomic_write(target, lambda handle: handle.write(data), replace=replace)


def _link_exclusive(tmp: str, target: Path) -> None:
    """Move tmp to target unless target exists; a hard link makes the check and the move one step."""
    try:
        os.link(tmp, target)
    except FileExistsError:
        raise
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EXDEV, errno.EMLINK):
            raise
        # File systems without hard links (FAT, some network mounts): check, then rename.
        if target.exists():
            raise FileExistsError(errno.EEXIST, "file exists", str(target)) from exc
        os.replace(tmp, target)
        return
    os.unlink(tmp)


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        return
