"""Mask math on MASK tensors [B, H, W] in 0..1: compositing, feathering, growing, colour keys."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

MaskOperation = Literal["multiply", "add", "subtract", "and", "or", "xor"]


def as_batch(mask: torch.Tensor) -> torch.Tensor:
    """Any mask [.., H, W] as [B, H, W]."""
    return mask.reshape(-1, mask.shape[-2], mask.shape[-1])


def composite(
    destination: torch.Tensor, source: torch.Tensor, x: int, y: int, op: MaskOperation
) -> torch.Tensor:
    """Combine `source` into `destination` at (x, y) with `op` (logic ops on rounded values), clamped 0..1."""
    out = as_batch(destination).clone()
    source = as_batch(source)
    right = min(x + source.shape[-1], out.shape[-1])
    bottom = min(y + source.shape[-2], out.shape[-2])
    src = source[:, : bottom - y, : right - x]
    dst = out[:, y:bottom, x:right]
    if op == "multiply":
        result = dst * src
    elif op == "add":
        result = dst + src
    elif op == "subtract":
        result = dst - src
    else:
        logic = {"and": torch.bitwise_and, "or": torch.bitwise_or, "xor": torch.bitwise_xor}[op]
        result = logic(dst.round().bool(), src.round().bool()).float()
    out[:, y:bottom, x:right] = result
    return torch.clamp(out, 0.0, 1.0)


def feather(mask: torch.Tensor, left: int, top: int, right: int, bottom: int) -> torch.Tensor:
    """Fade the mask linearly towards each edge over the given widths.

    The right and bottom ramps index from the end with -i, so their first step scales the first
    column/row instead of the last one: ComfyUI's indexing, kept so results match.
    """
    out = as_batch(mask).clone()
    left, right = min(left, out.shape[-1]), min(right, out.shape[-1])
    top, bottom = min(top, out.shape[-2]), min(bottom, out.shape[-2])
    for i in range(left):
        out[:, :, i] *= (i + 1.0) / left
    for i in range(right):
        out[:, :, -i] *= (i + 1) / right
    for i in range(top):
        out[:, i, :] *= (i + 1) / top
    for i in range(bottom):
        out[:, -i, :] *= (i + 1) / bottom
    return out


def grow(mask: torch.Tensor, expand: int, tapered_corners: bool) -> torch.Tensor:
    """Dilate (expand > 0) or erode (expand < 0) by |expand| steps of a 3x3 cross or square.

    Greyscale morphology: each step takes the max (or min) over the footprint; borders repeat the edge
    pixel, which equals scipy.ndimage's default reflection for a 3x3 footprint.
    """
    offsets = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    if tapered_corners:
        offsets = [(dy, dx) for dy, dx in offsets if dy == 0 or dx == 0]
    reduce = torch.maximum if expand > 0 else torch.minimum
    out = as_batch(mask)
    height, width = out.shape[-2], out.shape[-1]
    for _ in range(abs(expand)):
        padded = F.pad(out.unsqueeze(1), (1, 1, 1, 1), mode="replicate").squeeze(1)
        views = [padded[:, 1 + dy : 1 + dy + height, 1 + dx : 1 + dx + width] for dy, dx in offsets]
        result = views[0]
        for view in views[1:]:
            result = reduce(result, view)
        out = result
    return out.clone()


def color_to_mask(pixels: torch.Tensor, color: int) -> torch.Tensor:
    """1 where an image's 8-bit RGB (rounded) equals the 0xRRGGBB colour, else 0."""
    levels = (torch.clamp(pixels, 0, 1.0) * 255.0).round().to(torch.int)
    packed = (
        torch.bitwise_left_shift(levels[..., 0], 16)
        + torch.bitwise_left_shift(levels[..., 1], 8)
        + levels[..., 2]
    )
    return torch.where(packed == color, 1.0, 0).float()
