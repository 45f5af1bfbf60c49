"""Convolutions as plain GEMMs where oneDNN's float32 CPU convolution is slow: 1x1 kernels and tiny latents.

On CPU, oneDNN runs an NCHW float32 convolution by reordering activations (and weights) into its
blocked layout and back on every call. For the UNet's 1x1 convolutions (transformer proj_in/proj_out,
resnet shortcuts) and for 3x3 convolutions on the deepest levels (4x4 and 8x8 latents with 1280-2560
channels, where only a few dozen output pixels share each weight) that overhead is larger than the math:
side-by-side runs measured them 1.2-2x faster as `weight [Cout, Cin*k*k] @ columns [Cin*k*k, pixels]`
(a batched MKL GEMM that reads the weight in place). The result is the same convolution summed in a
different order (relative difference ~3e-7 per call, below what channels-last changes).

`install` gives each eligible `nn.Conv2d` of a module a forward that takes the GEMM route for the
shapes above and oneDNN's otherwise. The forward is a method bound to the module, so a deep copy (a
LoRA-patched UNet) rebinds it to the copy's own weights; state dicts are unchanged.
`DIFFGRAPH_GEMM_CONV=0` turns it off, `=1` forces it on where it is off by default.
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.nn.functional as F

from nodes.diffusion.bound_forward import bind_forwards, unbind_forwards

GEMM_CONV_ENV = "DIFFGRAPH_GEMM_CONV"

# 3x3 convolutions whose output has at most this many pixels per image run as GEMMs (8x8 latents and
# below: the UNet's two deepest levels at 256x256, one level at 512x512). Larger maps are faster in oneDNN.
MAX_GEMM_PIXELS = 64

_INSTALLED_ATTR = "_diffgraph_gemm_conv"


def gemm_conv_for(dtype: torch.dtype, device: torch.device) -> bool:
    """Whether convolutions computing in `dtype` on `device` take the GEMM route ($DIFFGRAPH_GEMM_CONV).

    Unset means automatic: on for float32 on CPU (measured faster), off elsewhere (cuDNN and
    bf16 oneDNN kernels do not pay the reorder cost).
    """
    value = os.environ.get(GEMM_CONV_ENV, "").strip().lower()
    if value:
        return value not in ("0", "false", "no", "off")
    return dtype == torch.float32 and device.type == "cpu"


def _eligible(conv: torch.nn.Module) -> bool:
    """Plain, ungrouped, undilated, zero-padded 1x1 (stride 1, no padding) or 3x3 convolutions."""
    if type(conv) is not torch.nn.Conv2d:
        return False
    if conv.groups != 1 or conv.dilation != (1, 1) or conv.padding_mode != "zeros":
        return False
    if isinstance(conv.padding, str):
        return False
    if conv.kernel_size == (1, 1):
        return conv.stride == (1, 1) and conv.padding == (0, 0)
    return conv.kernel_size == (3, 3)


def conv_as_gemm(conv: torch.nn.Conv2d, x: torch.Tensor) -> torch.Tensor | None:
    """`conv(x)` computed as a batched GEMM, or None when oneDNN is the better kernel for this input."""
    if x.dim() != 4 or x.dtype != torch.float32 or x.device.type != "cpu" or not x.is_contiguous():
        return None
    batch, channels, height, width = x.shape
    weight = conv.weight
    if weight.dtype != torch.float32 or not weight.is_contiguous():
        return None
    if conv.kernel_size == (1, 1):
        out_h, out_w = height, width
        columns = x.view(batch, channels, height * width)
    else:
        # _eligible refused string paddings ("same"), so both are int pairs here.
        pad_h, pad_w = int(conv.padding[0]), int(conv.padding[1])
        stride_h, stride_w = conv.stride
        out_h = (height + 2 * pad_h - 3) // stride_h + 1
        out_w = (width + 2 * pad_w - 3) // stride_w + 1
        if out_h * out_w > MAX_GEMM_PIXELS:
            return None
        columns = F.unfold(x, (3, 3), padding=(pad_h, pad_w), stride=conv.stride)
    matrix = weight.view(weight.shape[0], -1).expand(batch, -1, -1)
    if conv.bias is None:
        out = torch.bmm(matrix, columns)
    else:
        out = torch.baddbmm(conv.bias.view(1, -1, 1), matrix, columns)
    return out.view(batch, -1, out_h, out_w)


def _forward(self: torch.nn.Conv2d, x: torch.Tensor) -> Any:
    """nn.Conv2d.forward with the GEMM route for the shapes where it is faster."""
    out = conv_as_gemm(self, x)
    return torch.nn.Conv2d.forward(self, x) if out is None else out


def install(module: torch.nn.Module) -> int:
    """Give every eligible Conv2d in `module` the GEMM-routing forward; returns how many got it."""
    return bind_forwards(module, _eligible, _forward, _INSTALLED_ATTR)


def uninstall(module: torch.nn.Module) -> None:
    """Undo `install`: every Conv2d in `module` runs nn.Conv2d.forward again."""
    unbind_forwards(module, _INSTALLED_ATTR)
