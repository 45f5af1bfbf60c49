"""Canny edge detection in plain torch, with the conventions of the Canny preprocessor ComfyUI ships.

Facts followed (kornia.filters.canny as ComfyUI calls it, reimplemented): RGB to grey with weights
0.299/0.587/0.114; a 5x5 Gaussian blur of sigma 1 with reflected borders; unnormalised 3x3 Sobel
gradients with replicated borders; magnitude sqrt(gx^2 + gy^2 + 1e-6); non-maximum suppression along
the gradient direction rounded to 45 degrees (strictly above both neighbours, except that a tie with
the right or lower neighbour is kept), the border outside the image counting as sqrt(1e-6); weak
pixels above the low threshold, strong above the high one, and weak pixels joined to strong ones
through their 8 neighbours until nothing changes.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

EPS = 1e-6
BLUR_SIZE = 5
BLUR_SIGMA = 1.0
GREY = (0.299, 0.587, 0.114)
# Neighbour offsets (dy, dx) by direction index: right, down-right, down, down-left, left, up-left, up, up-right.
OFFSETS = ((0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1), (-1, 0), (-1, 1))
_TIE_KEPT = (0, 2)


def _grey(pixels: torch.Tensor) -> torch.Tensor:
    """[B, 3, H, W] RGB (or [B, 1, H, W]) to [B, 1, H, W] luma."""
    if pixels.shape[1] == 1:
        return pixels
    r, g, b = pixels[:, 0:1], pixels[:, 1:2], pixels[:, 2:3]
    return GREY[0] * r + GREY[1] * g + GREY[2] * b


def _blur(grey: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian blur with reflected borders."""
    x = torch.arange(BLUR_SIZE, dtype=grey.dtype) - BLUR_SIZE // 2
    k = torch.exp(-(x**2) / (2 * BLUR_SIGMA**2))
    k = k / k.sum()
    pad = BLUR_SIZE // 2
    out = F.conv2d(F.pad(grey, (pad, pad, 0, 0), mode="reflect"), k.view(1, 1, 1, -1))
    return F.conv2d(F.pad(out, (0, 0, pad, pad), mode="reflect"), k.view(1, 1, -1, 1))


def _sobel(grey: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Unnormalised Sobel x and y gradients with replicated borders."""
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], dtype=grey.dtype)
    kernels = torch.stack([kx, kx.t()]).unsqueeze(1)
    out = F.conv2d(F.pad(grey, (1, 1, 1, 1), mode="replicate"), kernels)
    return out[:, 0:1], out[:, 1:2]


def _suppress(gx: torch.Tensor, gy: torch.Tensor) -> torch.Tensor:
    """Gradient magnitude kept only on ridges along the gradient direction."""
    padded = torch.sqrt(F.pad(gx, (1, 1, 1, 1)) ** 2 + F.pad(gy, (1, 1, 1, 1)) ** 2 + EPS)
    height, width = gx.shape[-2:]
    magnitude = padded[..., 1 : 1 + height, 1 : 1 + width]
    neighbours = torch.stack(
        [padded[..., 1 + dy : 1 + dy + height, 1 + dx : 1 + dx + width] for dy, dx in OFFSETS], dim=2
    )
    step = torch.nan_to_num(torch.atan2(gy, gx) * (4 / math.pi)).round()
    keep = magnitude > padded[..., :1, :1]
    for offset in (0, 4):
        direction = ((step + offset) % 8).long()
        other = torch.gather(neighbours, 2, direction.unsqueeze(2)).squeeze(2)
        tie_ok = (direction == _TIE_KEPT[0]) | (direction == _TIE_KEPT[1])
        keep &= (magnitude > other) | (tie_ok & (magnitude == other))
    return magnitude * keep


def _hysteresis(edges: torch.Tensor) -> torch.Tensor:
    """Weak (0.5) pixels next to strong (1) ones become strong, repeated until stable; weak leftovers drop."""
    ring = torch.ones((1, 1, 3, 3), dtype=edges.dtype)
    ring[0, 0, 1, 1] = 0
    while True:
        weak = (edges == 0.5).to(edges.dtype)
        strong = (edges == 1).to(edges.dtype)
        touched = (F.conv2d(strong, ring, padding=1) > 0).to(edges.dtype)
        grown = touched * weak + strong
        nxt = grown + (grown == 0) * weak * 0.5
        if torch.equal(nxt, edges):
            return grown
        edges = nxt


def canny_edges(pixels: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """Binary edges [B, 1, H, W] (0 or 1) of images [B, 3, H, W] in 0..1."""
    gx, gy = _sobel(_blur(_grey(pixels.float())))
    magnitude = _suppress(gx, gy)
    edges = ((magnitude > low).float() + (magnitude > high).float()) * 0.5
    return _hysteresis(edges)
