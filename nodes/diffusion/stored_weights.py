"""Weights kept in their stored dtype (fp16, bf16, fp8) and widened one module at a time while it runs.

A T5-XXL file stored as fp8 holds 4.7 GB; widened to float32 all at once it would need 19 GB. ComfyUI
keeps such weights as stored and casts each layer's weight to the compute dtype inside the layer's
forward. The same happens here with hooks on chosen modules (a transformer block, an embedding, a
final norm): before the module runs its parameters are swapped for widened copies, and afterwards the
stored tensors are put back, so at most one module's widened weights exist at a time.

float8 values are widened with `Tensor.to`, which decodes subnormals and the e4m3fn/e5m2 formats
exactly.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch

# Dtypes ComfyUI's text encoder store accepts as they are; wider files are narrowed to float16 first.
NARROW_DTYPES = (torch.float16, torch.bfloat16, torch.float8_e4m3fn, torch.float8_e5m2)


def storage_dtype(file_dtype: torch.dtype, fallback: torch.dtype = torch.float16) -> torch.dtype:
    """The dtype weights are kept in: the file's when it is 2 bytes or less, else `fallback`.

    This is ComfyUI's rule for text encoder weights (a float32 file is held as float16).
    """
    if file_dtype.itemsize > fallback.itemsize:
        return fallback
    return file_dtype


class _Widen:
    """Forward hooks that widen one module's floating parameters for the duration of its forward.

    Parameters are looked up at each call, so a copy whose weights were replaced (a LoRA-patched
    clone) widens its own tensors.
    """

    def __init__(self, dtype: torch.dtype, scales: Mapping[int, torch.Tensor]):
        self.dtype = dtype
        self.scales = scales
        self.swapped: list[tuple[torch.nn.Parameter, torch.Tensor]] = []

    def before(self, module: torch.nn.Module, _args: Any) -> None:
        self.swapped = []
        for p in module.parameters():
            if not p.is_floating_point():
                continue
            scale = self.scales.get(id(p))
            if scale is None and p.dtype == self.dtype:
                continue
            self.swapped.append((p, p.data))
            wide = p.data.to(self.dtype)
            p.data = wide if scale is None else wide * scale.to(p.device, self.dtype)

    def after(self, _module: torch.nn.Module, _args: Any, _out: Any) -> None:
        for p, data in self.swapped:
            p.data = data
        self.swapped = []


def widen_while_running(
    modules: Iterable[torch.nn.Module], dtype: torch.dtype, scales: Mapping[int, torch.Tensor] | None = None
) -> None:
    """Make each module run with its parameters widened to `dtype`, keeping the stored tensors otherwise.

    `scales` (id of a parameter -> scalar) multiplies a widened weight: "scaled fp8" files store
    weight / scale in fp8 with the scale beside it.
    """
    for module in modules:
        widen = _Widen(dtype, dict(scales or {}))
        module.register_forward_pre_hook(widen.before)
        module.register_forward_hook(widen.after, always_call=True)


def narrowed(state: dict[str, torch.Tensor], dtype_of: Any) -> dict[str, torch.Tensor]:
    """The state dict with each floating tensor cast to `dtype_of(tensor)` (its storage dtype)."""
    return {k: v.to(dtype_of(v)) if v.is_floating_point() else v for k, v in state.items()}


# ComfyUI's "scaled fp8" convention: a `scaled_fp8` marker tensor beside the model (its dtype names the
# fp8 format), and per Linear a float32 `.scale_weight` (the stored fp8 weight is weight / scale) and
# optionally `.scale_input`, which only fp8 matrix multiplication reads; widened computation ignores it.
SCALED_MARKER = "scaled_fp8"
SCALE_WEIGHT = ".scale_weight"
SCALE_INPUT = ".scale_input"


def is_scaled_fp8(keys: Iterable[str], prefix: str = "") -> bool:
    """Whether the keys hold a scaled-fp8 model under `prefix` (its marker or per-layer scales)."""
    return any(
        k == prefix + SCALED_MARKER or (k.startswith(prefix) and k.endswith(SCALE_WEIGHT)) for k in keys
    )


def split_weight_scales(
    sd: Mapping[str, torch.Tensor], prefix: str = ""
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], torch.dtype | None]:
    """(the tensors without the scaled-fp8 extras, {weight key: float32 scalar scale}, the fp8 dtype).

    The dtype is the marker's (a float32 marker means e4m3fn, as ComfyUI reads it), None for a file
    without the marker. Scales without the marker, or without their weight, are refused.
    """
    marker = sd.get(prefix + SCALED_MARKER)
    fp8 = None if marker is None else marker.dtype
    if fp8 == torch.float32:
        fp8 = torch.float8_e4m3fn
    scales = {
        k[: -len(SCALE_WEIGHT)] + ".weight": v.float().reshape(())
        for k, v in sd.items()
        if k.endswith(SCALE_WEIGHT)
    }
    rest = {
        k: v
        for k, v in sd.items()
        if not k.endswith((SCALE_WEIGHT, SCALE_INPUT)) and k != prefix + SCALED_MARKER
    }
    orphans = sorted(set(scales) - set(rest))
    if orphans:
        raise ValueError(f"scaled fp8 file: scales without a weight, e.g. {orphans[:3]}")
    if scales and fp8 is None:
        raise ValueError(f"scaled fp8 file: per-layer scales but no '{prefix}{SCALED_MARKER}' marker tensor")
    return rest, scales, fp8


def scale_rows(sd: Mapping[str, torch.Tensor], scales: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Each tensor of `sd` as a 1-D tensor of its row count holding its weight's scale (NaN where unscaled).

    Key converters that split fused matrices by rows (qkv) or swap halves move these rows exactly as
    they move the weights, so the converted names find their scales with `converted_scales`.
    """
    return {
        k: torch.full((v.shape[0] if v.ndim else 1,), float(scales.get(k, float("nan"))))
        for k, v in sd.items()
    }


def converted_scales(rows: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The scalar scale of every converted tensor that has one (see `scale_rows`)."""
    out = {}
    for key, row in rows.items():
        if row.numel() and not torch.isnan(row[0]):
            if not torch.all(row == row[0]):
                raise ValueError(f"scaled fp8: tensor {key!r} mixes rows of differently scaled weights")
            out[key] = row[0].clone()
    return out
