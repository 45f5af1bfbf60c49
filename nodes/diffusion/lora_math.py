"""The arithmetic of weight patches: LoRA (alpha/rank scaling, DoRA, widening), full diffs, set values, rounding.

A patched weight is computed in float32 from its stored value and every patch on it, in order, then
rounded once to the dtype it is kept in. That dtype is the stored one, except that a diffusion model
whose weights are narrower than its compute dtype keeps the patched weight in the compute dtype (ComfyUI
holds such models at their inference dtype: float32 on a CPU). float8 weights are rounded
stochastically with a generator seeded from the weight's name, which is the rounding ComfyUI applies,
so the same LoRA on the same fp8 file gives the same bytes.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import torch

FP8_DTYPES = (torch.float8_e4m3fn, torch.float8_e5m2)
# (exponent bits, mantissa bits, exponent bias) of the float8 formats.
_FP8_BITS = {torch.float8_e4m3fn: (4, 3, 7), torch.float8_e5m2: (5, 2, 15)}
# Stochastic rounding walks the rows in slices of about this many elements (one generator throughout).
_SLICE_ELEMENTS = 4096 * 4096


@dataclass(frozen=True)
class LowRank:
    """One LoRA pair: delta = up @ down, scaled by alpha / rank (1 without alpha); DoRA with `dora_scale`."""

    up: torch.Tensor
    down: torch.Tensor
    alpha: float | None = None
    dora_scale: torch.Tensor | None = None
    # The shape the weight is zero-padded to before the update (`.reshape_weight`, e.g. BFL control
    # LoRAs widening FLUX's img_in from 64 to 128 input features).
    reshape: tuple[int, ...] | None = None

    @property
    def scale(self) -> float:
        """alpha / rank, or 1.0 when the file gives no alpha."""
        return 1.0 if self.alpha is None else self.alpha / self.down.shape[0]


@dataclass(frozen=True)
class FullDiff:
    """A stored difference added to the weight as is (`.diff` / `.diff_b` keys)."""

    diff: torch.Tensor


@dataclass(frozen=True)
class SetValue:
    """A value that replaces the weight outright, whatever the strength (`.set_weight` keys)."""

    value: torch.Tensor


Adapter = LowRank | FullDiff | SetValue


def pad_to(weight: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """`weight` in the top-left corner of a zero tensor of `shape` (which may not be smaller anywhere)."""
    if len(shape) != weight.dim() or any(n < o for n, o in zip(shape, weight.shape, strict=True)):
        raise ValueError(f"cannot widen a weight {tuple(weight.shape)} to {shape}")
    out = torch.zeros(shape, dtype=weight.dtype, device=weight.device)
    out[tuple(slice(0, n) for n in weight.shape)] = weight
    return out


def apply_adapter(weight: torch.Tensor, adapter: Adapter, strength: float) -> torch.Tensor:
    """`weight` (float32, the rows the adapter covers) with the adapter applied at `strength`."""
    if isinstance(adapter, SetValue):
        if tuple(adapter.value.shape) != tuple(weight.shape):
            raise ValueError(
                f"value of shape {tuple(adapter.value.shape)} for a weight {tuple(weight.shape)}"
            )
        return adapter.value.to(weight.device, torch.float32, copy=True)
    if isinstance(adapter, FullDiff):
        if tuple(adapter.diff.shape) != tuple(weight.shape):
            raise ValueError(f"diff of shape {tuple(adapter.diff.shape)} for a weight {tuple(weight.shape)}")
        return weight + strength * adapter.diff.to(weight.device, torch.float32)
    if adapter.reshape is not None and tuple(adapter.reshape) != tuple(weight.shape):
        weight = pad_to(weight, adapter.reshape)
    up = adapter.up.to(weight.device, torch.float32).flatten(1)
    down = adapter.down.to(weight.device, torch.float32).flatten(1)
    if up.shape[0] * down.shape[1] != weight.numel():
        raise ValueError(
            f"LoRA of {up.shape[0]}x{down.shape[1]} (rank {down.shape[0]}) for a weight {tuple(weight.shape)}"
        )
    delta = torch.mm(up, down).reshape(weight.shape)
    if adapter.dora_scale is None:
        return weight + (strength * adapter.scale) * delta
    return _dora(weight, delta * adapter.scale, adapter.dora_scale, strength)


def _dora(
    weight: torch.Tensor, delta: torch.Tensor, dora_scale: torch.Tensor, strength: float
) -> torch.Tensor:
    """DoRA: the LoRA-updated weight renormalised to the learned magnitudes, blended in by strength.

    The norm runs over each output row when the magnitudes have one value per row (the base weight's
    norm, as ComfyUI computes it), else over each input column of the updated weight.
    """
    scale = dora_scale.to(weight.device, torch.float32)
    updated = weight + delta
    if scale.shape[0] == updated.shape[0]:
        norm = weight.reshape(weight.shape[0], -1).norm(dim=1, keepdim=True)
        norm = norm.reshape(weight.shape[0], *[1] * (weight.dim() - 1))
    else:
        cols = updated.transpose(0, 1)
        norm = cols.reshape(cols.shape[0], -1).norm(dim=1, keepdim=True)
        norm = norm.reshape(cols.shape[0], *[1] * (weight.dim() - 1)).transpose(0, 1)
    updated = updated * (scale / (norm + torch.finfo(torch.float32).eps))
    if strength == 1.0:
        return updated
    return weight + strength * (updated - weight)


def kept_dtype(stored: torch.dtype, compute: torch.dtype | None) -> torch.dtype:
    """The dtype a patched weight is kept in: fp8 stays fp8, else the wider of stored and `compute`."""
    if compute is None or stored in FP8_DTYPES or not stored.is_floating_point:
        return stored
    return compute if torch.finfo(compute).bits > torch.finfo(stored).bits else stored


def name_seed(name: str) -> int:
    """The rounding seed of a weight: the CRC-32 of its (ComfyUI) state-dict name."""
    return zlib.crc32(name.encode())


def round_to(value: torch.Tensor, dtype: torch.dtype, name: str) -> torch.Tensor:
    """A float32 result rounded to `dtype`: plain casting, stochastic for float8 (seeded by `name`)."""
    if dtype not in FP8_DTYPES:
        return value.to(dtype)
    generator = torch.Generator(device=value.device).manual_seed(name_seed(name))
    out = torch.empty_like(value, dtype=dtype)
    rows = value.shape[0]
    slices = max(1.0, value.numel() / _SLICE_ELEMENTS)
    step = max(1, round(rows / slices))
    for start in range(0, rows, step):
        out[start : start + step].copy_(_stochastic_fp8(value[start : start + step], dtype, generator))
    return out


def _stochastic_fp8(x: torch.Tensor, dtype: torch.dtype, generator: torch.Generator) -> torch.Tensor:
    """Round to the float8 grid up or down with probability by distance (in float16, as ComfyUI works)."""
    exp_bits, man_bits, bias = _FP8_BITS[dtype]
    x = x.half()
    magnitude = x.abs()
    sign = torch.where(magnitude == 0, 0, torch.sign(x))
    exponent = torch.clamp(torch.floor(torch.log2(magnitude)) + bias, 0, 2**exp_bits - 1)
    normal = exponent != 0
    scaled = torch.where(
        normal,
        (magnitude / (2.0 ** (exponent - bias)) - 1.0) * (2**man_bits),
        magnitude / (2.0 ** (-bias + 1 - man_bits)),
    )
    scaled += torch.rand(scaled.size(), dtype=scaled.dtype, device=scaled.device, generator=generator)
    mantissa = scaled.floor() / (2**man_bits)
    result = sign * torch.where(
        normal, (2.0 ** (exponent - bias)) * (1.0 + mantissa), (2.0 ** (-bias + 1)) * mantissa
    )
    info = torch.finfo(dtype)
    return torch.clamp(result, min=info.min, max=info.max)
