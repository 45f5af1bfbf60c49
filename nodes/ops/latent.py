"""Latent math: pasting, feathered compositing, blending, slerp-style interpolation and batch index rules."""

from __future__ import annotations

import math

import torch

from nodes.ops.resize import common_upscale, repeat_to_batch


def match_latent(target_shape: torch.Size, latent: torch.Tensor, repeat_batch: bool = True) -> torch.Tensor:
    """Resize `latent` (bilinear, centre crop) to the target's size and optionally tile it to its batch."""
    if latent.shape[1:] != target_shape[1:]:
        latent = common_upscale(latent, target_shape[-1], target_shape[-2], "bilinear", "center")
    return repeat_to_batch(latent, target_shape[0]) if repeat_batch else latent


def feathered_paste(
    destination: torch.Tensor, source: torch.Tensor, x: int, y: int, feather: int
) -> torch.Tensor:
    """Paste `source` into a copy of `destination` at latent cell (x, y), ramping inner edges over `feather`.

    Edges touching the destination border stay hard; the source is cut where it overhangs.
    """
    out = destination.clone()
    source = source[:, :, : destination.shape[2] - y, : destination.shape[3] - x]
    if feather == 0:
        out[:, :, y : y + source.shape[2], x : x + source.shape[3]] = source
        return out
    weight = torch.ones_like(source)
    rows, cols = weight.shape[2], weight.shape[3]
    for t in range(feather):
        factor = (1.0 / feather) * (t + 1)
        if y != 0:
            weight[:, :, t : t + 1, :] *= factor
        if y + rows < destination.shape[2]:
            weight[:, :, rows - 1 - t : rows - t, :] *= factor
        if x != 0:
            weight[:, :, :, t : t + 1] *= factor
        if x + cols < destination.shape[3]:
            weight[:, :, :, cols - 1 - t : cols - t] *= factor
    region = out[:, :, y : y + rows, x : x + cols]
    out[:, :, y : y + rows, x : x + cols] = source * weight + region * (torch.ones_like(weight) - weight)
    return out


def masked_composite(
    destination: torch.Tensor,
    source: torch.Tensor,
    x: int,
    y: int,
    mask: torch.Tensor | None,
    multiplier: int,
    resize_source: bool,
) -> torch.Tensor:
    """Blend `source` over `destination` (both [B, C, H, W], modified in place) at pixel (x, y) / multiplier.

    The mask (any [.., H, W]) is resized bilinearly to the source and weights source over destination;
    offsets are clamped so at most the whole source hangs off an edge.
    """
    source = source.to(destination.device)
    if resize_source:
        source = torch.nn.functional.interpolate(
            source, size=(destination.shape[-2], destination.shape[-1]), mode="bilinear"
        )
    source = repeat_to_batch(source, destination.shape[0])
    x = max(-source.shape[-1] * multiplier, min(x, destination.shape[-1] * multiplier))
    y = max(-source.shape[-2] * multiplier, min(y, destination.shape[-2] * multiplier))
    left, top = x // multiplier, y // multiplier
    right, bottom = left + source.shape[-1], top + source.shape[-2]
    if mask is None:
        weight = torch.ones_like(source)
    else:
        weight = mask.to(destination.device, copy=True).reshape(-1, 1, mask.shape[-2], mask.shape[-1])
        weight = torch.nn.functional.interpolate(
            weight, size=(source.shape[-2], source.shape[-1]), mode="bilinear"
        )
        weight = repeat_to_batch(weight, source.shape[0])
    visible_w = destination.shape[-1] - left + min(0, x)
    visible_h = destination.shape[-2] - top + min(0, y)
    weight = weight[:, :, :visible_h, :visible_w]
    if weight.ndim < source.ndim:
        weight = weight.unsqueeze(1)
    pasted = weight * source[..., :visible_h, :visible_w]
    kept = (torch.ones_like(weight) - weight) * destination[..., top:bottom, left:right]
    destination[..., top:bottom, left:right] = pasted + kept
    return destination


def interpolate_latents(first: torch.Tensor, second: torch.Tensor, ratio: float) -> torch.Tensor:
    """Blend channel directions and magnitudes separately (ratio weights `first`).

    Norms are taken over channels and divided without re-adding the channel axis, exactly as ComfyUI
    does, so batches only broadcast where its arithmetic does (batch 1, or batch equal to channels).
    """
    second = match_latent(first.shape, second)
    norm_first = torch.linalg.vector_norm(first, dim=1)
    norm_second = torch.linalg.vector_norm(second, dim=1)
    dir_first = torch.nan_to_num(first / norm_first)
    dir_second = torch.nan_to_num(second / norm_second)
    mixed = dir_first * ratio + dir_second * (1.0 - ratio)
    mixed_dir = torch.nan_to_num(mixed / torch.linalg.vector_norm(mixed, dim=1))
    return mixed_dir * (norm_first * ratio + norm_second * (1.0 - ratio))


def tile_masks(masks: torch.Tensor, batch: int) -> torch.Tensor:
    """Tile a shorter mask batch (whole copies) until it covers `batch` items, cut to `batch`."""
    if masks.shape[0] < batch:
        masks = masks.repeat(math.ceil(batch / masks.shape[0]), *([1] * (masks.ndim - 1)))[:batch]
    return masks


def repeat_batch_index(indices: tuple[int, ...], amount: int) -> tuple[int, ...]:
    """Noise indices after repeating a batch `amount` times: each copy shifted past the previous span."""
    span = max(indices) - min(indices) + 1
    return indices + tuple(x + i * span for i in range(1, amount) for x in indices)
