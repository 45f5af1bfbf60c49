"""Tiled image-to-image passes: overlapping tiles blended with linear ramps (ComfyUI's tiled_scale rule).

A model that enlarges by `scale` runs on tiles of at most `tile` pixels that overlap by `overlap`; each
result is weighted by a ramp that rises over the (scaled) overlap at every tile edge, and the output is
the weighted sum divided by the summed weights. An image that fits one tile runs in a single call.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import torch


def tile_count(height: int, width: int, tile: int, overlap: int) -> int:
    """How many tiles one image of this size takes (1 when it fits a single tile)."""
    rows = 1 if height <= tile else math.ceil((height - overlap) / (tile - overlap))
    cols = 1 if width <= tile else math.ceil((width - overlap) / (tile - overlap))
    return rows * cols


def _starts(size: int, tile: int, overlap: int) -> list[int]:
    """Tile origins along one side; the last tile is pulled back so it ends at the edge."""
    if size <= tile:
        return [0]
    return [max(0, min(size - overlap, p)) for p in range(0, size - overlap, tile - overlap)]


def _edge_ramp(shape: torch.Size, feather: int) -> torch.Tensor:
    """Blend weights for one output tile: (t + 1) / feather over the outer `feather` rows and columns."""
    weight = torch.ones(shape)
    for dim in (2, 3):
        if feather >= shape[dim]:
            continue
        for t in range(feather):
            factor = (t + 1) / feather
            weight.narrow(dim, t, 1).mul_(factor)
            weight.narrow(dim, shape[dim] - 1 - t, 1).mul_(factor)
    return weight


@torch.inference_mode()
def tiled_scale(
    pixels: torch.Tensor,
    model: Callable[[torch.Tensor], torch.Tensor],
    *,
    tile: int,
    overlap: int,
    scale: int,
    out_channels: int,
    on_tile: Callable[[], None] | None = None,
) -> torch.Tensor:
    """Run `model` over [B, C, H, W] pixels tile by tile; returns float32 [B, out_channels, H*s, W*s] on CPU.

    `model` takes one [1, C, h, w] tile and returns [1, out_channels, h*scale, w*scale]; `on_tile` is
    called after every tile (progress and cancellation).
    """
    batch, _, height, width = pixels.shape
    out = torch.empty(batch, out_channels, height * scale, width * scale)
    for b in range(batch):
        item = pixels[b : b + 1]
        if height <= tile and width <= tile:
            out[b : b + 1] = model(item).float().cpu()
            if on_tile is not None:
                on_tile()
            continue
        total = torch.zeros(1, out_channels, height * scale, width * scale)
        weights = torch.zeros_like(total)
        for y, x in itertools.product(_starts(height, tile, overlap), _starts(width, tile, overlap)):
            h, w = min(tile, height - y), min(tile, width - x)
            result = model(item[:, :, y : y + h, x : x + w]).float().cpu()
            ramp = _edge_ramp(result.shape, overlap * scale)
            rows = slice(y * scale, y * scale + result.shape[2])
            cols = slice(x * scale, x * scale + result.shape[3])
            total[:, :, rows, cols] += result * ramp
            weights[:, :, rows, cols] += ramp
            if on_tile is not None:
                on_tile()
        out[b : b + 1] = total / weights
    return out
