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
