"""Reading weight files: safetensors in one sequential pass, pickle only behind an explicit opt-in.

The safetensors reader parses the header itself and `readinto`s each wanted tensor in file order, so a
file is read once with large sequential reads (no mmap page-fault storm, no second copy), and a
truncated file is caught from its header before any tensor is read.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Callable
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


def read_safetensors(path: Path, want: Callable[[str], bool] | None = None) -> dict[str, torch.Tensor]:
    """Tensors of a safetensors file (those whose key passes `want`), read sequentially in file order."""
    header, start = read_header(path)
    items = sorted(
        ((k, v) for k, v in header.items() if k != "__metadata__" and (want is None or want(k))),
        key=lambda kv: kv[1]["data_offsets"][0],
    )
    out: dict[str, torch.Tensor] = {}
    with open(path, "rb", buffering=0) as f:
        pos = -1
        for key, info in items:
            begin, end = info["data_offsets"]
            dtype = _DTYPES.get(info["dtype"])
            if dtype is None:
                raise CheckpointFormatError(
                    f"{path.name}: tensor {key} has unsupported dtype {info['dtype']}"
                )
            t = torch.empty(info["shape"], dtype=dtype)
            if pos != start + begin:
                f.seek(start + begin)
            buf = t.view(-1).view(torch.uint8).numpy() if t.numel() else None
            if buf is not None and f.readinto(memoryview(buf)) != end - begin:
                raise CheckpointFormatError(f"{path.name}: short read at tensor {key}; the file is truncated")
            pos = start + end
            out[key] = t
    return out


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
    path: Path, want: Callable[[str], bool] | None = None, allow_pickle: bool | None = None
) -> dict[str, torch.Tensor]:
    """A weight file's tensors: safetensors directly, pickle suffixes only behind the opt-in."""
    if not path.is_file():
        raise CheckpointFormatError(f"{path}: no such file")
    if path.suffix.lower() in PICKLE_SUFFIXES:
        sd = read_pickle(path, allow_pickle)
        return {k: v for k, v in sd.items() if want is None or want(k)}
    return read_safetensors(path, want)
