"""Image math on IMAGE tensors [B, H, W, C] in 0..1: blending, filters, quantising, padding, stitching."""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image as PILImage

from nodes.ops.resize import common_upscale

BlendMode = Literal["normal", "multiply", "screen", "overlay", "soft_light", "difference"]
DitherMode = Literal["none", "floyd-steinberg", "bayer-2", "bayer-4", "bayer-8", "bayer-16"]
StitchDirection = Literal["right", "down", "left", "up"]
SpacingColor = Literal["white", "black", "red", "green", "blue"]


def alpha_fix(destination: torch.Tensor, source: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Make channel counts agree: drop the source's extra alpha, or give the source an opaque one.

    ComfyUI 0.3.64 pads the destination in the second case, which leaves the counts unequal and fails;
    padding the source composites an RGB image onto an RGBA one instead (same numbers everywhere else).
    """
    if destination.shape[-1] < source.shape[-1]:
        source = source[..., : destination.shape[-1]]
    elif destination.shape[-1] > source.shape[-1]:
        source = F.pad(source, (0, 1), value=1.0)
    return destination, source


def _soft_light_curve(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x <= 0.25, ((16 * x - 12) * x + 4) * x, torch.sqrt(x))


def blend_layers(base: torch.Tensor, layer: torch.Tensor, mode: BlendMode) -> torch.Tensor:
    """The blended layer before mixing by factor (the usual photo-editor formulas)."""
    if mode == "normal":
        return layer
    if mode == "multiply":
        return base * layer
    if mode == "screen":
        return 1 - (1 - base) * (1 - layer)
    if mode == "overlay":
        return torch.where(base <= 0.5, 2 * base * layer, 1 - 2 * (1 - base) * (1 - layer))
    if mode == "soft_light":
        darker = base - (1 - 2 * layer) * base * (1 - base)
        lighter = base + (2 * layer - 1) * (_soft_light_curve(base) - base)
        return torch.where(layer <= 0.5, darker, lighter)
    return base - layer


def blend_images(first: torch.Tensor, second: torch.Tensor, factor: float, mode: BlendMode) -> torch.Tensor:
    """Mix `second` over `first` by factor; a differently sized second is resized (bicubic, centre crop)."""
    first, second = alpha_fix(first, second)
    if first.shape != second.shape:
        second = common_upscale(
            second.permute(0, 3, 1, 2), first.shape[2], first.shape[1], "bicubic", "center"
        )
        second = second.permute(0, 2, 3, 1)
    mixed = first * (1 - factor) + blend_layers(first, second, mode) * factor
    return torch.clamp(mixed, 0, 1)


def gaussian_kernel(size: int, sigma: float) -> torch.Tensor:
    """A normalised size x size Gaussian sampled on [-1, 1] in both axes (radius-independent spread)."""
    grid_y, grid_x = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    dist = torch.sqrt(grid_y * grid_y + grid_x * grid_x)
    kernel = torch.exp(-(dist * dist) / (2.0 * sigma * sigma))
    return kernel / kernel.sum()


def _filter(pixels: torch.Tensor, kernel: torch.Tensor, radius: int) -> torch.Tensor:
    """Depthwise 2-D convolution with reflected borders, channels last in and out."""
    channels = pixels.shape[-1]
    weights = kernel.repeat(channels, 1, 1).unsqueeze(1)
    padded = F.pad(pixels.permute(0, 3, 1, 2), (radius, radius, radius, radius), "reflect")
    out = F.conv2d(padded, weights, padding=kernel.shape[0] // 2, groups=channels)
    return out[:, :, radius:-radius, radius:-radius].permute(0, 2, 3, 1)


def blur(pixels: torch.Tensor, radius: int, sigma: float) -> torch.Tensor:
    """Gaussian blur with a (2 radius + 1)-wide kernel."""
    if radius == 0:
        return pixels
    return _filter(pixels, gaussian_kernel(radius * 2 + 1, sigma), radius)


def sharpen(pixels: torch.Tensor, radius: int, sigma: float, alpha: float) -> torch.Tensor:
    """Unsharp-style sharpening: negative Gaussian surround, centre raised so the kernel sums to one."""
    if radius == 0:
        return pixels
    size = radius * 2 + 1
    kernel = (gaussian_kernel(size, sigma) * -(alpha * 10)).to(pixels.dtype)
    centre = size // 2
    kernel[centre, centre] = kernel[centre, centre] - kernel.sum() + 1.0
    return torch.clamp(_filter(pixels, kernel, radius), 0, 1)


def _bayer_matrix(level: int) -> np.ndarray:
    if level == 0:
        return np.zeros((1, 1), "float32")
    q = 4**level
    inner = q * _bayer_matrix(level - 1)
    return np.block([[inner - 1.5, inner + 0.5], [inner + 1.5, inner - 0.5]]) / q


def _bayer_dither(image: PILImage.Image, palette: PILImage.Image, order: int) -> PILImage.Image:
    """Ordered dithering: add a tiled threshold map scaled to the palette spacing, then map to the palette."""
    spread = 2 * 256 / (len(palette.getpalette() or []) // 3)
    matrix = torch.from_numpy(spread * _bayer_matrix(int(math.log2(order))) + 0.5)
    pixels = torch.from_numpy(np.array(image).astype(np.float32))
    tiled = matrix.tile(
        math.ceil(pixels.shape[0] / matrix.shape[0]), math.ceil(pixels.shape[1] / matrix.shape[1])
    )
    pixels.add_(tiled.unsqueeze(-1)[: pixels.shape[0], : pixels.shape[1]]).clamp_(0, 255)
    dithered = PILImage.fromarray(pixels.to(dtype=torch.uint8).numpy())
    return dithered.quantize(palette=palette, dither=PILImage.Dither.NONE)


def quantize(pixels: torch.Tensor, colors: int, dither: DitherMode) -> torch.Tensor:
    """Reduce each image to a palette of `colors` (PIL median cut), with the chosen dithering."""
    result = torch.zeros_like(pixels)
    for index in range(pixels.shape[0]):
        image = PILImage.fromarray((pixels[index] * 255).to(torch.uint8).numpy(), mode="RGB")
        palette = image.quantize(colors=colors)
        if dither == "none":
            reduced = image.quantize(palette=palette, dither=PILImage.Dither.NONE)
        elif dither == "floyd-steinberg":
            reduced = image.quantize(palette=palette, dither=PILImage.Dither.FLOYDSTEINBERG)
        else:
            reduced = _bayer_dither(image, palette, int(dither.split("-")[-1]))
        result[index] = torch.tensor(np.array(reduced.convert("RGB"))).float() / 255
    return result


def pad_for_outpaint(
    pixels: torch.Tensor, left: int, top: int, right: int, bottom: int, feathering: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Grey (0.5) border around the images, and a mask [1, H', W']: 1 on the border, a squared ramp inside.

    The ramp runs `feathering` pixels in from each padded side and is skipped when the image is too small.
    """
    batch, height, width, channels = pixels.shape
    out = (
        torch.ones((batch, height + top + bottom, width + left + right, channels), dtype=torch.float32) * 0.5
    )
    out[:, top : top + height, left : left + width, :] = pixels
    mask = torch.ones((height + top + bottom, width + left + right), dtype=torch.float32)
    inner = torch.zeros((height, width), dtype=torch.float32)
    if feathering > 0 and feathering * 2 < height and feathering * 2 < width:
        rows = torch.arange(height).unsqueeze(1)
        cols = torch.arange(width).unsqueeze(0)
        dist_top = rows if top != 0 else torch.full_like(rows, height)
        dist_bottom = height - rows if bottom != 0 else torch.full_like(rows, height)
        dist_left = cols if left != 0 else torch.full_like(cols, width)
        dist_right = width - cols if right != 0 else torch.full_like(cols, width)
        dist = torch.minimum(torch.minimum(dist_top, dist_bottom), torch.minimum(dist_left, dist_right))
        ramp = (feathering - dist).double() / feathering
        inner = torch.where(dist < feathering, ramp * ramp, torch.zeros_like(ramp)).float()
    mask[top : top + height, left : left + width] = inner
    return out, mask.unsqueeze(0)


SPACING_COLORS: dict[str, tuple[float, float, float]] = {
    "white": (1.0, 1.0, 1.0),
    "black": (0.0, 0.0, 0.0),
    "red": (1.0, 0.0, 0.0),
    "green": (0.0, 1.0, 0.0),
    "blue": (0.0, 0.0, 1.0),
}


def _extend_batch(images: torch.Tensor, batch: int) -> torch.Tensor:
    """Repeat the last image until the batch has `batch` items."""
    if images.shape[0] >= batch:
        return images
    return torch.cat([images, images[-1:].repeat(batch - images.shape[0], 1, 1, 1)])


def _pad_centred(images: torch.Tensor, size: int, axis: int, value: float) -> torch.Tensor:
    """Pad height (axis 1) or width (axis 2) to `size`, half before and the rest after."""
    missing = size - images.shape[axis]
    if missing <= 0:
        return images
    before, after = missing // 2, missing - missing // 2
    pads = (0, 0, 0, 0, before, after) if axis == 1 else (0, 0, before, after)
    return F.pad(images, pads, mode="constant", value=value)


def _with_channels(images: torch.Tensor, channels: int) -> torch.Tensor:
    extra = channels - images.shape[-1]
    if extra <= 0:
        return images
    return torch.cat([images, torch.ones(*images.shape[:-1], extra, device=images.device)], dim=-1)


def stitch(
    first: torch.Tensor,
    second: torch.Tensor,
    direction: StitchDirection,
    match_size: bool,
    spacing: int,
    color: SpacingColor,
) -> torch.Tensor:
    """Place `second` beside `first` in `direction`, optionally resized to match and with a spacer strip.

    Matching resizes `second` (Lanczos on 8-bit) to the first's height (sideways) or width (vertical);
    otherwise the shorter side is padded centrally (black for coloured spacers, the grey level otherwise).
    """
    batch = max(first.shape[0], second.shape[0])
    first, second = _extend_batch(first, batch), _extend_batch(second, batch)
    sideways = direction in ("left", "right")
    rgb = SPACING_COLORS[color]
    grey = color in ("white", "black")
    if match_size:
        aspect = second.shape[2] / second.shape[1]
        if sideways:
            size = (int(first.shape[1] * aspect), first.shape[1])
        else:
            size = (first.shape[2], int(first.shape[2] / aspect))
        second = common_upscale(second.movedim(-1, 1), size[0], size[1], "lanczos", "disabled").movedim(1, -1)
    else:
        axis = 1 if sideways else 2
        target = max(first.shape[axis], second.shape[axis])
        pad_value = rgb[0] if grey else 0.0
        first, second = (
            _pad_centred(first, target, axis, pad_value),
            _pad_centred(second, target, axis, pad_value),
        )
    channels = max(first.shape[-1], second.shape[-1])
    first, second = _with_channels(first, channels), _with_channels(second, channels)
    parts = [second, first] if direction in ("left", "up") else [first, second]
    if spacing > 0:
        spacing += spacing % 2
        if sideways:
            shape = (first.shape[0], max(first.shape[1], second.shape[1]), spacing, channels)
        else:
            shape = (first.shape[0], spacing, max(first.shape[2], second.shape[2]), channels)
        strip = torch.zeros(shape, device=first.device)
        for index, value in enumerate(rgb[: min(3, channels)]):
            strip[..., index] = value
        if channels == 4:
            strip[..., 3] = 1.0
        parts.insert(1, strip)
    return torch.cat(parts, dim=2 if sideways else 1)
