"""The one resolver for client-supplied file and folder names: always a path inside its base folder.

Upload, /view, user data, LoadImage-style inputs and filename prefixes all go through
`resolve_inside`, which refuses what could name something else than a plain file below the base:
`.`/`..`, empty names, absolute paths, drive letters, backslashes, NUL and control characters,
percent-encoded separators, components over 255 bytes, and symlinks that lead out.
"""

from __future__ import annotations

import re
from pathlib import Path

from engine.errors import DiffgraphError

# Percent-encoded separators or dots surviving one round of decoding mean a client tried to smuggle a
# separator past a decoder; no legitimate file name contains them.
_ENCODED = re.compile(r"%(2f|5c|2e|00)", re.IGNORECASE)
_DRIVE = re.compile(r"^[a-zA-Z]:")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Most file systems stop a name at 255 bytes; longer ones fail later with an OS error.
MAX_COMPONENT_BYTES = 255
MAX_PATH_CHARS = 1024


class PathRefused(DiffgraphError):
    """A client path that is malformed (400) or leads outside its base directory (403)."""

    code = "path_refused"

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def _check_part(value: str, what: str, *, nested: bool) -> list[str]:
    """Syntactic checks on one client-supplied part; returns its '/'-separated segments."""
    if not isinstance(value, str):
        raise PathRefused(f"{what} must be text, not {type(value).__name__}")
    if len(value) > MAX_PATH_CHARS:
        raise PathRefused(f"{what} is {len(value)} characters long (limit {MAX_PATH_CHARS})")
    if _CONTROL.search(value):
        raise PathRefused(f"{what} {value[:60]!r} contains a NUL or control character")
    if "\\" in value:
        raise PathRefused(f"{what} {value!r} contains a backslash; use '/' between folders")
    if _ENCODED.search(value):
        raise PathRefused(f"{what} {value!r} contains a percent-encoded separator or dot")
    if value.startswith("/") or _DRIVE.match(value):
        raise PathRefused(f"{what} {value!r} is absolute; give a name relative to the folder")
    segments = [s for s in value.split("/") if s != ""]
    for segment in segments:
        if segment in (".", ".."):
            raise PathRefused(f"{what} {value!r} contains {segment!r}; name a file or folder")
        try:
            size = len(segment.encode("utf-8"))
        except UnicodeEncodeError:
            raise PathRefused(f"{what} {value[:60]!r} is not valid UTF-8 text") from None
        if size > MAX_COMPONENT_BYTES:
            raise PathRefused(f"{what} has a name of {size} bytes (limit {MAX_COMPONENT_BYTES})")
    if not nested and len(segments) > 1:
        raise PathRefused(f"{what} {value!r} contains a '/'; put folders in the subfolder field")
    return segments


def resolve_inside(base: Path, subfolder: str = "", filename: str = "", *, need_name: bool = False) -> Path:
    """`base/subfolder/filename`, refusing anything that could lead outside `base` (see the module).

    `subfolder` may hold '/'; `filename` must be a single name (required when need_name is set).
    """
    parts = _check_part(subfolder, "subfolder", nested=True)
    name = _check_part(filename, "filename", nested=False)
    if need_name and not name:
        raise PathRefused("filename is empty; give the name of a file")
    parts += name
    root = Path(base).resolve()
    # resolve() follows symlinks, so a link pointing out of the folder fails the containment check.
    target = root.joinpath(*parts).resolve()
    if target != root and root not in target.parents:
        raise PathRefused(f"{'/'.join(parts)!r} leads outside its folder", status=403)
    return target


def resolve_relative(base: Path, relative: str, *, need_name: bool = True) -> Path:
    """`base/relative` for a '/'-separated relative path such as 'workflows/a.json'."""
    head, _, tail = relative.rpartition("/")
    return resolve_inside(base, head, tail, need_name=need_name)
