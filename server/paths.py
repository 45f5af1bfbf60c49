"""The one function that turns client-supplied folder and file names into paths inside a base directory."""

from __future__ import annotations

import re
from pathlib import Path

from engine.errors import DiffgraphError

# Percent-encoded separators or dots surviving one round of decoding mean a client tried to smuggle a
# separator past a decoder; no legitimate file name contains them.
_ENCODED = re.compile(r"%(2f|5c|2e|00)", re.IGNORECASE)
_DRIVE = re.compile(r"^[a-zA-Z]:")


class PathRefused(DiffgraphError):
    """A client path that is malformed (400) or leads outside its base directory (403)."""

    code = "path_refused"

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def _check_part(value: str, what: str, *, nested: bool) -> list[str]:
    """Syntactic checks on one client-supplied part; returns its '/'-separated segments."""
    if "\x00" in value:
        raise PathRefused(f"{what} contains a NUL byte")
    if "\\" in value:
        raise PathRefused(f"{what} {value!r} contains a backslash; use '/' between folders")
    if _ENCODED.search(value):
        raise PathRefused(f"{what} {value!r} contains a percent-encoded separator or dot")
    if value.startswith("/") or _DRIVE.match(value):
        raise PathRefused(f"{what} {value!r} is absolute; give a name relative to the folder")
    segments = [s for s in value.split("/") if s not in ("", ".")]
    if ".." in segments:
        raise PathRefused(f"{what} {value!r} contains '..'")
    if not nested and len(segments) > 1:
        raise PathRefused(f"{what} {value!r} contains a '/'; put folders in the subfolder field")
    return segments


def resolve_inside(base: Path, subfolder: str = "", filename: str = "") -> Path:
    """`base/subfolder/filename`, refusing `..`, absolute paths, backslashes, encoded separators and
    symlinks that lead outside `base`. `subfolder` may hold '/'; `filename` must be a single name.
    """
    parts = _check_part(subfolder, "subfolder", nested=True)
    parts += _check_part(filename, "filename", nested=False)
    root = base.resolve()
    # resolve() follows symlinks, so a link pointing out of the folder fails the containment check.
    target = root.joinpath(*parts).resolve()
    if target != root and root not in target.parents:
        raise PathRefused(f"{'/'.join(parts)!r} leads outside its folder", status=403)
    return target


def split_relative(path: str) -> tuple[str, str]:
    """Split 'a/b/c.json' into ('a/b', 'c.json') for resolve_inside."""
    head, _, tail = path.rpartition("/")
    return head, tail
