"""Deterministic random weights for test files: one generator per tensor, so a file is reproducible byte for byte.

Each tensor's values depend only on the seed, a component name and the tensor's key, never on the order
tensors are drawn in or on which other tensors a file holds. That makes a reduced-depth file a strict
subset of a deeper one, and lets anyone rebuild a published reference file from its layout alone.
The value rule keeps activations in a sane range through deep random stacks: fan-in scaled uniform
weights, norm gains near one, biases bounded like their weights.
"""

from __future__ import annotations

import json
import math
import struct
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

# safetensors header dtype names -> torch dtypes.
SAFETENSORS_DTYPES: dict[str, torch.dtype] = {
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "F8_E4M3": torch.float8_e4m3fn,
    "F8_E5M2": torch.float8_e5m2,
}

# Multiplier of the component name hash; a large prime keeps seeds of neighbouring components apart.
_SEED_STRIDE = 1000003
NORM_SPREAD = 0.1


def tensor_seed(seed: int, component: str, key: str) -> int:
    """The generator seed of one tensor."""
    return (seed * _SEED_STRIDE + zlib.crc32(f"{component}/{key}".encode())) % 2**63


def _uniform(seed: int, component: str, key: str, shape: Sequence[int]) -> torch.Tensor:
    generator = torch.Generator().manual_seed(tensor_seed(seed, component, key))
    return torch.rand(tuple(shape), dtype=torch.float32, generator=generator)


def weight_bound(shape: Sequence[int]) -> float:
    """Half-width of a weight's uniform range: 1/sqrt(fan-in) for matrices and kernels, NORM_SPREAD for gains."""
    if len(shape) >= 2:
        return 1.0 / math.sqrt(math.prod(shape[1:]))
    return NORM_SPREAD


def random_tensor(
    seed: int, component: str, key: str, shape: Sequence[int], layout: Mapping[str, Sequence[int]]
) -> torch.Tensor:
    """One float32 tensor by the value rule; `layout` (key -> shape) finds the weight a bias belongs to."""
    u2 = _uniform(seed, component, key, shape) * 2 - 1
    if key.endswith("pos_embed"):
        return u2
    if key.endswith(".bias"):
        weight = key[: -len(".bias")] + ".weight"
        if weight not in layout:
            raise ValueError(f"bias {key!r} has no weight {weight!r} to take its bound from")
        return u2 * weight_bound(layout[weight])
    if key.endswith((".weight", ".scale")):
        if len(shape) >= 2:
            return u2 * weight_bound(shape)
        return 1 + u2 * NORM_SPREAD
    raise ValueError(f"no value rule for tensor {key!r} (expected .weight, .scale, .bias or pos_embed)")


def random_state_dict(
    seed: int, component: str, layout: Mapping[str, tuple[Sequence[int], torch.dtype]]
) -> dict[str, torch.Tensor]:
    """Every tensor of a layout (key -> (shape, dtype)), drawn by the value rule and cast to its dtype."""
    shapes = {key: shape for key, (shape, _) in layout.items()}
    return {
        key: random_tensor(seed, component, key, shape, shapes).to(dtype)
        for key, (shape, dtype) in layout.items()
    }


# safetensors writes tensors by descending dtype rank, then by name; these are the ranks of the
# dtypes test files use (int64 position ids above every float).
_WRITE_RANK = {
    torch.int64: 0,
    torch.float32: 1,
    torch.bfloat16: 2,
    torch.float16: 3,
    torch.float8_e4m3fn: 4,
    torch.float8_e5m2: 5,
}
_HEADER_NAMES = {dtype: name for name, dtype in SAFETENSORS_DTYPES.items()} | {torch.int64: "I64"}


def _safetensors_header(layout: Mapping[str, tuple[Sequence[int], torch.dtype]]) -> tuple[bytes, list[str]]:
    """The header `save_file` writes for these tensors (padded to 8 bytes) and the order of their data."""
    keys = sorted(layout, key=lambda k: (_WRITE_RANK[layout[k][1]], k))
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for key in keys:
        shape, dtype = layout[key]
        nbytes = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
        header[key] = {
            "dtype": _HEADER_NAMES[dtype],
            "shape": list(shape),
            "data_offsets": [offset, offset + nbytes],
        }
        offset += nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    return raw + b" " * (-len(raw) % 8), keys


def write_random_file(
    path: Path, seed: int, component: str, layout: Mapping[str, tuple[Sequence[int], torch.dtype]]
) -> Path:
    """Write a random-weight safetensors file byte for byte as `safetensors.torch.save_file` lays it out.

    Tensors are drawn and written one at a time, so a file of any size (the 12 GB of a full FLUX
    model) needs memory for its largest tensor only.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    shapes = {key: shape for key, (shape, _) in layout.items()}
    header, keys = _safetensors_header(layout)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(header)) + header)
        for key in keys:
            shape, dtype = layout[key]
            tensor = random_tensor(seed, component, key, shape, shapes).to(dtype)
            f.write(tensor.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return path


def layout_from_header(header: Mapping[str, object]) -> dict[str, tuple[list[int], torch.dtype]]:
    """A layout from a safetensors-style header (key -> {"shape", "dtype"}); `__metadata__` is skipped."""
    layout: dict[str, tuple[list[int], torch.dtype]] = {}
    for key, entry in header.items():
        if key == "__metadata__":
            continue
        assert isinstance(entry, dict)
        layout[key] = (list(entry["shape"]), SAFETENSORS_DTYPES[entry["dtype"]])
    return layout
