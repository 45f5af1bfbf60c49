"""Reading weight files: safetensors in one sequential pass, pickle only behind an explicit opt-in.

The safetensors reader parses the header itself and `readinto`s each wanted tensor in file order, so a
file is read once with large sequential reads (no mmap page-fault storm, no second copy), and a
truncated file is caught from its header before any tensor is read.
"""

from __future__ import annotations

import json
import os
import queue
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from engine import UserFacingError

PICKLE_ENV = "DIFFGRAPH_ALLOW_PICKLE"
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")
_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
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
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CheckpointFormatError(f"{path.name}: safetensors header is not valid JSON") from exc
    end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    if 8 + n + end > size:
        raise CheckpointFormatError(
            f"{path.name}: file is truncated ({size} bytes, its header needs {8 + n + end}); "
            "download or copy it again"
        )
    return header, 8 + n


def read_safetensors(
    path: Path, want: Callable[[str], bool] | None = None, cast: Cast | None = None
) -> dict[str, torch.Tensor]:
    """Tensors of a safetensors file (those whose key passes `want`), read once, in file order.

    `cast(key)` names the dtype a floating tensor should have (None keeps the file's): conversion
    happens while reading, so no full-size copy in the file's dtype is ever allocated.
    """
    header, start = read_header(path)
    items = sorted(
        ((k, v) for k, v in header.items() if k != "__metadata__" and (want is None or want(k))),
        key=lambda kv: kv[1]["data_offsets"][0],
    )
    out: dict[str, torch.Tensor] = {}
    jobs: list[_Job] = []
    for key, info in items:
        src = _DTYPES.get(info["dtype"])
        if src is None:
            raise CheckpointFormatError(f"{path.name}: tensor {key} has unsupported dtype {info['dtype']}")
        dst = (cast(key) if cast is not None and src.is_floating_point else None) or src
        out[key] = torch.empty(info["shape"], dtype=dst)
        begin, end = info["data_offsets"]
        if end - begin != out[key].numel() * src.itemsize:
            raise CheckpointFormatError(
                f"{path.name}: tensor {key} spans {end - begin} bytes but its shape {info['shape']} "
                f"({info['dtype']}) needs {out[key].numel() * src.itemsize}; the file is corrupt"
            )
        if end > begin:
            jobs.append(_Job(key, start + begin, end - begin, src, out[key]))
    _fill(path, jobs)
    return out


_CHUNK = 16 << 20  # bytes per read for tensors converted on the fly; a multiple of every item size
_BUFFERS = 3


@dataclass
class _Job:
    """One tensor to fill: where its bytes are, their dtype, and the destination tensor."""

    key: str
    offset: int
    nbytes: int
    src: torch.dtype
    dst: torch.Tensor


def _fill(path: Path, jobs: list[_Job]) -> None:
    """Fill every job's tensor: a reader thread streams the file while this thread converts dtypes.

    Same-dtype tensors are read straight into their destination; the others go through a few
    reusable bounce buffers, so file I/O overlaps the conversion and page-faulting of the output.
    """
    free: queue.Queue[torch.Tensor] = queue.Queue()
    for _ in range(_BUFFERS):
        free.put(torch.empty(_CHUNK, dtype=torch.uint8))
    ready: queue.Queue[tuple | BaseException | None] = queue.Queue()
    stop = threading.Event()

    def reader() -> None:
        try:
            with open(path, "rb", buffering=0) as f:
                for job in jobs:
                    f.seek(job.offset)
                    if job.dst.dtype == job.src:
                        _read_exact(f, job.dst.view(-1).view(torch.uint8), path, job.key)
                        continue
                    for done in range(0, job.nbytes, _CHUNK):
                        n = min(_CHUNK, job.nbytes - done)
                        buf = free.get()
                        if stop.is_set():
                            return
                        _read_exact(f, buf[:n], path, job.key)
                        ready.put((job, done, n, buf))
            ready.put(None)
        except BaseException as exc:  # handed to the consuming thread, which re-raises it
            ready.put(exc)

    thread = threading.Thread(target=reader, name="safetensors-reader", daemon=True)
    thread.start()
    try:
        while (item := ready.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            job, done, n, buf = item
            size = job.src.itemsize
            job.dst.view(-1)[done // size : (done + n) // size].copy_(buf[:n].view(job.src))
            free.put(buf)
    finally:
        # Unblocks a reader waiting for a buffer; it then sees `stop` and returns.
        stop.set()
        free.put(torch.empty(0, dtype=torch.uint8))
        thread.join()


def _read_exact(f, dst: torch.Tensor, path: Path, key: str) -> None:
    view = memoryview(dst.numpy())
    got = 0
    while got < len(view):
        n = f.readinto(view[got:])
        if not n:
            raise CheckpointFormatError(f"{path.name}: short read at tensor {key}; the file is truncated")
        got += n


def safetensors_metadata(path: Path) -> dict[str, str]:
    """The file's `__metadata__` map (empty when absent)."""
    header, _ = read_header(path)
    return dict(header.get("__metadata__") or {})


def pickle_allowed(explicit: bool | None = None) -> bool:
    """Whether pickle files may be read: an explicit argument wins, else $DIFFGRAPH_ALLOW_PICKLE=1."""
    if explicit is not None:
        return explicit
    return os.environ.get(PICKLE_ENV, "") in ("1", "true", "yes")


def read_pickle(path: Path, allow: bool | None = None) -> dict[str, torch.Tensor]:
    """A `.ckpt`/`.pt` state dict through torch.load(weights_only=True), only when allowed."""
    if not pickle_allowed(allow):
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
    allow_pickle: bool | None = None,
    cast: Cast | None = None,
) -> dict[str, torch.Tensor]:
    """A weight file's tensors: safetensors directly, pickle suffixes only behind the opt-in."""
    if not path.is_file():
        raise CheckpointFormatError(f"{path}: no such file")
    if path.suffix.lower() in PICKLE_SUFFIXES:
        sd = read_pickle(path, allow_pickle)
        out = {k: v for k, v in sd.items() if want is None or want(k)}
        if cast is not None:
            out = {k: v.to(cast(k) or v.dtype) if v.is_floating_point() else v for k, v in out.items()}
        return out
    return read_safetensors(path, want, cast)
