"""Nearest-neighbour 2x upsampling followed by a 3x3 convolution, run as one stride-2 transposed convolution.

A UNet upsampler repeats every pixel into a 2x2 block and then runs a 3x3 convolution over the
enlarged map. Each output pixel at (2i+a, 2j+b) only ever sees source rows {i-1, i} (a = 0) or {i, i+1}
(a = 1), and the same for columns, because neighbouring taps land on the same repeated source pixel.
Summing those taps of the kernel ahead of time gives a 4x4 kernel that a stride-2 transposed
convolution applies to the source map directly: 4 multiply-adds per output pixel and input channel
instead of 9, and no enlarged copy of the input. At 256x256 the three SD1.5 upsamplers are about a
tenth of a step's arithmetic. The result is the same convolution with the repeated taps added first
(relative difference ~1e-7 per call, well under the 1e-5 that exact mode allows).

Side-by-side timings on a 2-core CPU (float32, batch 2) put oneDNN's transposed convolution at 0.5-0.7x
of upsample + convolution for 16x16 and 32x32 outputs; for 8x8 outputs the GEMM route of `conv_gemm`
is faster, so those keep it. The folded weight is kept on the convolution and rebuilt whenever its
weight tensor changes (LoRA patching writes new tensors or bumps the version counter). `install`
patches diffusers `Upsample2D` modules that do plain nearest 2x interpolation and a 3x3 convolution;
anything else (an explicit output size, other dtypes or devices, a norm, autograd) keeps diffusers'
forward.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from diffusers.models.upsampling import Upsample2D

from nodes.diffusion.bound_forward import bind_forwards, unbind_forwards
from nodes.diffusion.conv_gemm import MAX_GEMM_PIXELS

_INSTALLED_ATTR = "_diffgraph_upsample_fold"
_FOLDED_ATTR = "_diffgraph_folded_weight"

# The 4 taps of the folded kernel along one axis, as sums of the 3x3 kernel's taps 0..2. With stride 2
# and padding 1, transposed-convolution tap t feeds output row 2s + t - 1 from source row s: tap 0 is
# the odd row below (kernel tap 2), tap 1 the even row itself (taps 1+2), tap 2 the odd row itself
# (taps 0+1), tap 3 the even row above (tap 0).
_FOLDED_TAPS = ((2,), (1, 2), (0, 1), (0,))


def fold_weight(weight: torch.Tensor) -> torch.Tensor:
    """The [Cin, Cout, 4, 4] transposed-convolution weight equal to upsample-then-`weight` (3x3)."""
    rows = torch.stack([weight[:, :, list(taps), :].sum(dim=2) for taps in _FOLDED_TAPS], dim=2)
    full = torch.stack([rows[:, :, :, list(taps)].sum(dim=3) for taps in _FOLDED_TAPS], dim=3)
    return full.transpose(0, 1).contiguous()


def _folded(conv: torch.nn.Conv2d) -> torch.Tensor:
    """The folded weight for the conv's current weight, rebuilt if the weight changed."""
    weight = conv.weight
    key = (weight.data_ptr(), weight._version, weight.shape)
    cached = conv.__dict__.get(_FOLDED_ATTR)
    if cached is None or cached[0] != key:
        with torch.no_grad():
            cached = (key, fold_weight(weight.detach()))
        conv.__dict__[_FOLDED_ATTR] = cached
    return cached[1]


def upsample_conv(conv: torch.nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """`conv(interpolate(x, scale_factor=2, mode="nearest"))` as one stride-2 transposed convolution."""
    return F.conv_transpose2d(x, _folded(conv), conv.bias, stride=2, padding=1)


def _conv_of(upsampler: Upsample2D) -> torch.nn.Module | None:
    """The upsampler's convolution (diffusers names it `conv` or, in old layouts, `Conv2d_0`)."""
    return upsampler.conv if upsampler.name == "conv" else upsampler.Conv2d_0


def _eligible(module: torch.nn.Module) -> bool:
    """A diffusers Upsample2D doing nearest 2x interpolation then a plain zero-padded 3x3 convolution."""
    if type(module) is not Upsample2D:
        return False
    if module.norm is not None or module.use_conv_transpose or not module.interpolate:
        return False
    if not module.use_conv or getattr(module, "interpolate_mode", "nearest") != "nearest":
        return False
    conv = _conv_of(module)
    return (
        type(conv) is torch.nn.Conv2d
        and conv.kernel_size == (3, 3)
        and conv.stride == (1, 1)
        and conv.padding == (1, 1)
        and conv.dilation == (1, 1)
        and conv.groups == 1
        and conv.padding_mode == "zeros"
    )


def _forward(self: Upsample2D, hidden_states: torch.Tensor, output_size: Any = None, *args, **kwargs) -> Any:
    """Upsample2D.forward with the folded route for float32 CPU inputs at the default 2x size (16x16 and up)."""
    x = hidden_states
    if (
        output_size is None
        and not args
        and not kwargs
        and x.dim() == 4
        and x.dtype == torch.float32
        and x.device.type == "cpu"
        and x.is_contiguous()
        and not torch.is_grad_enabled()
        and 4 * x.shape[2] * x.shape[3] > MAX_GEMM_PIXELS
    ):
        conv = _conv_of(self)
        # install() only patched upsamplers whose conv is a plain nn.Conv2d.
        assert isinstance(conv, torch.nn.Conv2d)
        if conv.weight.dtype == torch.float32 and conv.weight.device.type == "cpu":
            return upsample_conv(conv, x)
    return Upsample2D.forward(self, hidden_states, output_size, *args, **kwargs)


def install(module: torch.nn.Module) -> int:
    """Give every eligible Upsample2D in `module` the folded forward; returns how many got it."""
    return bind_forwards(module, _eligible, _forward, _INSTALLED_ATTR)


def uninstall(module: torch.nn.Module) -> None:
    """Undo `install`: every Upsample2D in `module` runs diffusers' forward again (folded weights dropped)."""
    for child in unbind_forwards(module, _INSTALLED_ATTR):
        assert isinstance(child, Upsample2D)  # install() marks Upsample2D modules only
        conv = _conv_of(child)
        if conv is not None:
            conv.__dict__.pop(_FOLDED_ATTR, None)
