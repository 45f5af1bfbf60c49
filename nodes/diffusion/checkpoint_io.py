"""Reading weight files: safetensors in one sequential pass, pickle only behind an explicit opt-in.

The safetensors reader parses the header itself, checks that every tensor lies inside the file (so a
truncated file is caught before any tensor is read), then copies each wanted tensor once, in file
order, from a sequentially read-ahead mapping straight into a tensor of its final dtype and device:
one pass over the file, no per-key file opens, no intermediate copy in the file's dtype, and for an
accelerator no full copy in host memory (each tensor goes from the page cache to the device).
"""

from __future__ import annotations

import json
import math
import mmap
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from engine import UserFacingError

PICKLE_ENV = "DIFFGRAPH_ALLOW_PICKLE"
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")
_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "F8_E4M3": torch.float8_e4m3fn,
    "F8_E5M2": torch.float8_e5m2,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
_MAX_HEADER = 100 << 20
# Target dtype per tensor key (None keeps the file's dtype).
Cast = Callable[[str], "torch.dtype | None"]


class CheckpointFormatError(UserFacingError):
    """A weight file that is unreadable, truncated, or not what the loader expected."""

    code = "invalid_checkpoint"


class PickleRefusedError(UserFacingError):
    """A pickle checkpoint without the user's explicit opt-in."""

    code = "pickle_not_allowed"


def read_header(path: Path) -> tuple[dict, int]:
    """The safetensors header (without __metadata__ under '__metadata__' key kept) and data start."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise CheckpointFormatError(
                f"{path.name}: file is {size} bytes, too short for a safetensors header"
            )
        (n,) = struct.unpack("<Q", head)
        if n > min(_MAX_HEADER, size - 8):
            raise CheckpointFormatError(
                f"{path.name}: not a valid safetensors file (header length {n} for a {size}-byte file); "
                "expected a .safetensors checkpoint"
            )
        try:
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
            raise CheckpointFormatError(f"{path.name}: safetensors header is not valid JSON") from exc
    if not isinstance(header, dict):
        raise CheckpointFormatError(f"{path.name}: safetensors header is not a JSON object")
    metadata = header.get("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise CheckpointFormatError(f"{path.name}: safetensors __metadata__ must map names to text")
    end = max((_checked_entry(path, k, v) for k, v in header.items() if k != "__metadata__"), default=0)
    if 8 + n + end > size:
        raise CheckpointFormatError(
            f"{path.name}: file is truncated ({size} bytes, its header needs {8 + n + end}); "
            "download or copy it again"
        )
    return header, 8 + n


def _checked_entry(path: Path, key: str, info: Any) -> int:
    """Validate one tensor entry of a header (before anything is allocated); returns its end offset."""

    def bad(why: str) -> CheckpointFormatError:
        return CheckpointFormatError(f"{path.name}: tensor {key[:80]!r} {why}; the file is corrupt")

    if not isinstance(info, dict):
        raise bad("has no description object")
    dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
    if not isinstance(dtype, str) or dtype not in _DTYPES:
        raise CheckpointFormatError(f"{path.name}: tensor {key[:80]!r} has unsupported dtype {dtype!r}")
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
        raise bad(f"has an invalid shape {str(shape)[:80]}")
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(type(o) is int for o in offsets)
        or not 0 <= offsets[0] <= offsets[1]
    ):
        raise bad(f"has invalid data_offsets {str(offsets)[:80]}")
    needed = math.prod(shape) * _DTYPES[dtype].itemsize
    if offsets[1] - offsets[0] != needed:
        raise bad(
            f"spans {offsets[1] - offsets[0]} bytes but its shape {str(shape)[:80]} ({dtype}) needs {needed}"
        )
    return offsets[1]


def read_safetensors(
    path: Path,
    want: Callable[[str], bool] | None = None,
    cast: Cast | None = None,
    device: torch.device | str | None = None,
) -> dict[str, torch.Tensor]:
    """Tensors of a safetensors file (those whose key passes `want`), read once, in file order.

    `cast(key)` names the dtype a floating tensor should have (None keeps the file's): conversion
    happens while reading, so no full-size copy in the file's dtype is ever allocated. `device`
    (default cpu) is where the tensors are allocated and filled, straight from the file mapping.
    """
    header, start = read_header(path)
    items = sorted(
        ((k, v) for k, v in header.items() if k != "__metadata__" and (want is None or want(k))),
        key=lambda kv: kv[1]["data_offsets"][0],
    )
    out: dict[str, torch.Tensor] = {}
    jobs: list[_Job] = []
    for key, info in items:
        # read_header has checked dtype, shape and span against the file, so this allocation is bounded.
        src = _DTYPES[info["dtype"]]
        dst = (cast(key) if cast is not None and src.is_floating_point else None) or src
        out[key] = torch.empty(info["shape"], dtype=dst, device=device)
        begin, end = info["data_offsets"]
        if end > begin:
            jobs.append(_Job(start + begin, end - begin, src, out[key]))
    _fill(path, jobs)
    return out


# How many copied-out bytes of a file mapping `_fill` lets accumulate before unmapping them.
_RELEASE_BYTES = 64 * 2**20


@dataclass
class _Job:
    """One tensor to fill: where its bytes are, their dtype, and the destination tensor."""

    offset: int
    nbytes: int
    src: torch.dtype
    dst: torch.Tensor


def _fill(path: Path, jobs: list[_Job]) -> None:
    """Copy every job's bytes from a private mapping of the file into its tensor, converting dtypes.

    The mapping is walked once in file order with sequential read-ahead, so the page cache is read
    without an intermediate buffer and each tensor is written exactly once, in its final dtype.
    `read_header` has already checked that every tensor lies inside the file.
    """
    if not jobs:
        return
    with open(path, "rb") as f:
        # Copy-on-write keeps the file untouched yet gives torch a writable buffer. The mapping is
        # released once `data` (whose storage holds it) goes away when this function returns.
        mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
    advise = hasattr(mapped, "madvise")
    if advise:
        mapped.madvise(mmap.MADV_SEQUENTIAL)
    data = torch.frombuffer(mapped, dtype=torch.uint8)
    released = 0
    for job in jobs:
        raw = data[job.offset : job.offset + job.nbytes]
        if job.offset % job.src.itemsize:
            raw = raw.clone()  # an unaligned tensor (allowed by the format) cannot be viewed in place
        job.dst.view(-1).copy_(raw.view(job.src))
        # Unmap the pages already copied out: otherwise a whole file (12 GB for FLUX in fp8) stays mapped
        # into this process until the end, doubling its resident size while it loads. They were never
        # written, so dropping them from the private mapping just leaves them in the page cache.
        done = (job.offset + job.nbytes) // mmap.PAGESIZE * mmap.PAGESIZE
        if advise and done - released >= _RELEASE_BYTES:
            mapped.madvise(mmap.MADV_DONTNEED, released, done - released)
            released = done


def safetensors_metadata(path: Path) -> dict[str, str]:
    """The file's `__metadata__` map (empty when absent)."""
    header, _ = read_header(path)
    return dict(header.get("__metadata__") or {})


def pickle_allowed() -> bool:
    """Whether pickle files may be read: only when $DIFFGRAPH_ALLOW_PICKLE=1 (or true/yes)."""
    return os.environ.get(PICKLE_ENV, "") in ("1", "true", "yes")


def read_pickle(path: Path) -> dict[str, torch.Tensor]:
    """A `.ckpt`/`.pt` state dict through torch.load(weights_only=True), only when allowed."""
    if not pickle_allowed():
        raise PickleRefusedError(
            f"{path.name} is a pickle file ({path.suffix}); pickle can run code when loaded, so diffgraph "
            f"refuses it by default. Convert it to .safetensors, or opt in with {PICKLE_ENV}=1 "
            "(it is then read with torch.load(weights_only=True))."
        )
    try:
        data = torch.load(path, map_location="cpu", weights_only=True, mmap=False)
    except Exception as exc:  # torch raises many types for corrupt or unsafe pickles
        raise CheckpointFormatError(f"{path.name}: cannot read as a weights-only pickle: {exc}") from exc
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    if not isinstance(data, dict):
        raise CheckpointFormatError(f"{path.name}: pickle does not hold a state dict")
    return {k: v for k, v in data.items() if isinstance(v, torch.Tensor)}


def read_weights(
    path: Path,
    want: Callable[[str], bool] | None = None,
    cast: Cast | None = None,
    device: torch.device | str | None = None,
) -> dict[str, torch.Tensor]:
    """A weight file's tensors (on `device`, default cpu): safetensors directly, pickle behind the opt-in."""
    if not path.is_file():
        raise CheckpointFormatError(f"{path}: no such file")
    if path.suffix.lower() in PICKLE_SUFFIXES:
        sd = read_pickle(path)
        out = {k: v for k, v in sd.items() if want is None or want(k)}
        if cast is not None:
            out = {k: v.to(cast(k) or v.dtype) if v.is_floating_point() else v for k, v in out.items()}
        return out if device is None else {k: v.to(device) for k, v in out.items()}
    return read_safetensors(path, want, cast, device)
