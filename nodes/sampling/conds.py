"""Conditioning resolved for one sampling run: areas, masks, timestep ranges and inpainting inputs.

Facts followed (ComfyUI's process_conds, reimplemented): percentage areas are rounded against the
latent size; masks are resized (bilinear) to the latent, and "mask bounds" turns a mask's bounding box
into the area (at least 8 latent pixels a side); start/end percents become sigmas; every area on one
side gets a same-area twin on the other side, made of the opposite side's smallest enclosing entry's
model inputs; a 9-channel inpainting UNet gets [mask, masked-image latent] concatenated to its input,
an instruct-pix2pix UNet the conditioning's image latent as it is (zeros without one), FLUX Canny/Depth
that latent in model space (the zero latent's model-space value without one) and FLUX Fill its
masked-image latent and packed mask.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F

from nodes.sampling.flow import ModelSampling
from nodes.types import ConcatKind, CondEntry, ControlApplication, LatentFormat

# What a 4-channel SD latent of an all-black image holds: the masked-image input of an inpainting
# UNet when no image is given (ComfyUI's blank_inpaint_image_like values).
BLANK_INPAINT_LATENT = (0.8223, -0.6876, 0.6364, 0.1380)
MIN_BOUNDS_SIZE = 8

Area = tuple[int, int, int, int]


@dataclass(frozen=True, eq=False)
class SamplingCond:
    """One entry ready for the sampler: model inputs plus where and when it applies.

    `area` is (height, width, y, x) in latent pixels; `mask` float [B, h, w] at the latent's size;
    the entry is skipped while sigma > `sigma_start` or sigma < `sigma_end`.
    """

    embeds: torch.Tensor
    pooled: torch.Tensor | None
    extras: dict[str, Any]
    concat: torch.Tensor | None
    area: Area | None
    strength: float
    mask: torch.Tensor | None
    mask_strength: float
    sigma_start: float
    sigma_end: float
    control: ControlApplication | None = None


@dataclass(frozen=True, eq=False)
class InpaintSource:
    """What a model's extra input is built from (SD inpainting and ip2p UNets, FLUX Fill and Canny/Depth).

    `latents` is the sampler's starting latent in UNet space [B, C, h, w]; `denoise_mask` the prepared
    noise mask [B, C, h, w] or None; `latent_format` scales a conditioning's own image latent.
    """

    latents: torch.Tensor
    denoise_mask: torch.Tensor | None
    latent_format: LatentFormat
    # Which extra input the model reads: SD inpainting's [mask, masked image] (inpaint_concat),
    # instruct-pix2pix's raw image latent, FLUX Fill's (fill_concat), FLUX Canny/Depth's (flux_image).
    kind: ConcatKind = "inpaint"


def repeat_to_batch(t: torch.Tensor, batch: int) -> torch.Tensor:
    """First `batch` items, repeating the tensor along dim 0 when it has fewer."""
    if t.shape[0] > batch:
        return t[:batch]
    if t.shape[0] < batch:
        reps = math.ceil(batch / t.shape[0])
        return t.repeat(reps, *([1] * (t.ndim - 1)))[:batch]
    return t


def resize_to_batch(t: torch.Tensor, batch: int) -> torch.Tensor:
    """Spread items evenly over a new batch size (nearest item), as ComfyUI's resize_to_batch_size."""
    n = t.shape[0]
    if n == batch:
        return t
    if batch <= 1:
        return t[:batch]
    if batch < n:
        scale = (n - 1) / (batch - 1)
        idx = [min(round(i * scale), n - 1) for i in range(batch)]
    else:
        scale = n / batch
        idx = [min(math.floor((i + 0.5) * scale), n - 1) for i in range(batch)]
    return t[idx]


def center_resize(t: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Crop [B, C, H, W] to the target aspect around the centre, then resize bilinearly."""
    old_h, old_w = t.shape[-2], t.shape[-1]
    old_aspect, new_aspect = old_w / old_h, width / height
    x = y = 0
    if old_aspect > new_aspect:
        x = round((old_w - old_w * (new_aspect / old_aspect)) / 2)
    elif old_aspect < new_aspect:
        y = round((old_h - old_h * (old_aspect / new_aspect)) / 2)
    cropped = t.narrow(-2, y, old_h - y * 2).narrow(-1, x, old_w - x * 2)
    return F.interpolate(cropped, size=(height, width), mode="bilinear")


def _mask_bounds(mask: torch.Tensor) -> Area:
    """(h, w, y, x) of the non-zero part of a [B, h, w] mask over all items (8x8 at 0,0 if empty)."""
    bounds = mask.abs().max(dim=0).values
    if not bool((bounds != 0).any()):
        return (MIN_BOUNDS_SIZE, MIN_BOUNDS_SIZE, 0, 0)
    ys, xs = torch.where(bounds != 0)
    y0, y1, x0, x1 = int(ys.min()), int(ys.max()), int(xs.min()), int(xs.max())
    return (max(MIN_BOUNDS_SIZE, y1 - y0 + 1), max(MIN_BOUNDS_SIZE, x1 - x0 + 1), y0, x0)


def _area(entry: CondEntry, height: int, width: int) -> Area | None:
    a = entry.area
    if a is None:
        return None
    if a.percentage:
        return (
            max(1, round(a.height * height)),
            max(1, round(a.width * width)),
            round(a.y * height),
            round(a.x * width),
        )
    return (int(a.height), int(a.width), int(a.y), int(a.x))


def _latent_mask(mask: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """A [B, H, W] (or [H, W]) mask at the latent's size, bilinear as ComfyUI resizes it."""
    if mask.ndim == 2:
        mask = mask.unsqueeze(0)
    mask = mask.float()
    if tuple(mask.shape[1:]) != (height, width):
        mask = F.interpolate(mask.unsqueeze(1), size=(height, width), mode="bilinear").squeeze(1)
    return mask


def image_concat(entry: CondEntry, src: InpaintSource, shape: torch.Size) -> torch.Tensor:
    """[B, C, h, w]: the conditioning's image latent (zeros without one) at the latent's size and batch.

    Raw VAE space for instruct-pix2pix UNets; FLUX models read it in model space (latent scaling
    applied, so the missing image's zeros become the format's shifted value), as ComfyUI does.
    """
    batch, _, height, width = shape
    device = src.latents.device
    if entry.concat_latent is not None:
        image = entry.concat_latent.float().to(device)
    else:
        image = torch.zeros(tuple(shape), device=device)
    if tuple(image.shape[-2:]) != (height, width):
        image = center_resize(image, height, width)
    image = resize_to_batch(image, batch)
    return image if src.kind == "ip2p" else src.latent_format.process_in(image)


def fill_concat(entry: CondEntry, src: InpaintSource, shape: torch.Size) -> torch.Tensor:
    """[B, 80, h, w]: FLUX Fill's masked-image latent (model space) and its mask packed 8x8 per latent pixel.

    ComfyUI's facts: no masked image means a zero latent (before the latent scaling); no mask means the
    sampler's noise mask, else all ones; the mask is averaged over channels, resized to 8x the latent and
    each 8x8 pixel block becomes 64 channels (row-major within the block), not rounded.
    """
    batch, _, height, width = shape
    device = src.latents.device
    image = image_concat(entry, src, shape)
    mask = entry.concat_mask if entry.concat_mask is not None else src.denoise_mask
    if mask is None:
        mask = torch.ones((batch, 1, height, width), device=device)
    mask = mask.float().to(device).mean(dim=1, keepdim=True)
    if tuple(mask.shape[-2:]) != (height * 8, width * 8):
        mask = center_resize(mask, height * 8, width * 8)
    items = mask.shape[0]
    packed = mask.view(items, height, 8, width, 8).permute(0, 2, 4, 1, 3).reshape(items, 64, height, width)
    return torch.cat([image, resize_to_batch(packed, batch)], dim=1)


def inpaint_concat(entry: CondEntry, src: InpaintSource, shape: torch.Size) -> torch.Tensor:
    """[B, 5, h, w]: the (rounded) inpaint mask and the masked-image latent, a 9-channel UNet's extra input.

    The other kinds' inputs are built by fill_concat and image_concat.
    """
    if src.kind == "fill":
        return fill_concat(entry, src, shape)
    if src.kind in ("ip2p", "flux_image"):
        return image_concat(entry, src, shape)
    batch, _, height, width = shape
    mask = entry.concat_mask if entry.concat_mask is not None else src.denoise_mask
    if entry.concat_latent is not None:
        image = src.latent_format.process_in(entry.concat_latent.float()).to(src.latents.device)
    else:
        image = src.latents
    if tuple(image.shape[1:]) != tuple(shape[1:]):
        image = center_resize(image, height, width)
    image = resize_to_batch(image, batch)
    if mask is None:
        blank = torch.tensor(BLANK_INPAINT_LATENT, dtype=image.dtype, device=image.device)
        ones = torch.ones((batch, 1, height, width), dtype=image.dtype, device=image.device)
        return torch.cat([ones, blank.view(1, -1, 1, 1).expand(batch, -1, height, width)], dim=1)
    mask = mask.to(image.device, image.dtype)
    if mask.ndim == len(shape):
        mask = mask[:, :1]
    mask = mask.reshape(-1, 1, mask.shape[-2], mask.shape[-1])
    if tuple(mask.shape[-2:]) != (height, width):
        mask = center_resize(mask, height, width)
    return torch.cat([resize_to_batch(mask.round(), batch), image], dim=1)


def resolve_side(
    entries: Sequence[CondEntry],
    shape: torch.Size,
    ms: ModelSampling,
    prompt_type: str,
    inpaint: InpaintSource | None = None,
) -> list[SamplingCond]:
    """Each entry with its area, mask and sigma range resolved against a latent of `shape`."""
    _, _, height, width = shape
    out = []
    for e in entries:
        area = _area(e, height, width)
        mask = None
        if e.mask is not None:
            mask = _latent_mask(e.mask, height, width)
            if e.set_area_to_bounds:
                area = _mask_bounds(mask)
        extras = {"width": width * 8, "height": height * 8, "prompt_type": prompt_type, **e.extras}
        out.append(
            SamplingCond(
                embeds=e.embeds,
                pooled=e.pooled,
                extras=extras,
                concat=inpaint_concat(e, inpaint, shape) if inpaint is not None else None,
                area=area,
                strength=e.strength,
                mask=mask,
                mask_strength=e.mask_strength,
                sigma_start=ms.percent_to_sigma(e.start_percent),
                sigma_end=ms.percent_to_sigma(e.end_percent),
                control=e.control,
            )
        )
    return out


def _inside(a: Area, outer: Area) -> bool:
    """Whether rectangle a lies within rectangle outer."""
    return (
        a[2] >= outer[2]
        and a[3] >= outer[3]
        and a[0] + a[2] <= outer[0] + outer[2]
        and (a[1] + a[3] <= outer[1] + outer[3])
    )


def _add_same_area(others: list[SamplingCond], c: SamplingCond) -> None:
    """Give `others` an entry covering c's area (ComfyUI's create_cond_with_same_area_if_none)."""
    if c.area is None:
        return
    smallest: SamplingCond | None = None
    for x in others:
        if x.area is None:
            smallest = smallest or x
        elif _inside(c.area, x.area) and (
            smallest is None or smallest.area is None or math.prod(smallest.area[:2]) > math.prod(x.area[:2])
        ):
            smallest = x
    if smallest is None or smallest.area == c.area:
        return
    others.append(
        replace(
            c, embeds=smallest.embeds, pooled=smallest.pooled, extras=smallest.extras, concat=smallest.concat
        )
    )


def prepare_groups(
    groups: Sequence[Sequence[CondEntry]],
    shape: torch.Size,
    ms: ModelSampling,
    inpaint: InpaintSource | None = None,
    prompt_types: Sequence[str] | None = None,
) -> list[list[SamplingCond]]:
    """Every group resolved for a latent of `shape`, each area mirrored in every other group."""
    types = list(prompt_types) if prompt_types is not None else ["positive"] * len(groups)
    sides = [resolve_side(g, shape, ms, t, inpaint) for g, t in zip(groups, types, strict=True)]
    for i, side in enumerate(sides):
        for c in list(side):
            for j, other in enumerate(sides):
                if j != i:
                    _add_same_area(other, c)
    return sides


def prepare_conds(
    positive: Sequence[CondEntry],
    negative: Sequence[CondEntry],
    shape: torch.Size,
    ms: ModelSampling,
    inpaint: InpaintSource | None = None,
) -> tuple[list[SamplingCond], list[SamplingCond]]:
    """Both sides resolved for a latent of `shape`, each area mirrored on the other side."""
    pos, neg = prepare_groups([positive, negative], shape, ms, inpaint, ("positive", "negative"))
    return pos, neg
