"""Resizing [N, C, H, W] tensors the way ComfyUI's upscale nodes do: torch modes, bislerp and lanczos."""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image as PILImage

UpscaleMethod = Literal["nearest-exact", "bilinear", "area", "bicubic", "bislerp", "lanczos"]
CropMethod = Literal["disabled", "center"]


def center_crop_to_aspect(samples: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """Trim equal margins so the [.., H, W] tensor has the aspect ratio of width x height."""
    old_height, old_width = samples.shape[-2], samples.shape[-1]
    old_aspect = old_width / old_height
    new_aspect = width / height
    x = y = 0
    if old_aspect > new_aspect:
        x = round((old_width - old_width * (new_aspect / old_aspect)) / 2)
    elif old_aspect < new_aspect:
        y = round((old_height - old_height * (old_aspect / new_aspect)) / 2)
    return samples.narrow(-2, y, old_height - 2 * y).narrow(-1, x, old_width - 2 * x)


def _slerp_rows(start: torch.Tensor, end: torch.Tensor, ratio: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation of [N, C] rows by ratio [N, 1], magnitudes blended linearly.

    Zero rows count as direction zero; nearly equal directions keep `start`, opposite ones fall back to a
    linear blend (ComfyUI's bislerp rules, including its sine-over-sine weighting).
    """
    channels = start.shape[-1]
    start_norm = torch.norm(start, dim=-1, keepdim=True)
    end_norm = torch.norm(end, dim=-1, keepdim=True)
    start_dir = start / start_norm
    end_dir = end / end_norm
    start_dir[start_norm.expand(-1, channels) == 0.0] = 0.0
    end_dir[end_norm.expand(-1, channels) == 0.0] = 0.0
    cosine = (start_dir * end_dir).sum(1)
    angle = torch.acos(cosine)
    sine = torch.sin(angle)
    weight = ratio.squeeze(1)
    blended = (torch.sin((1.0 - weight) * angle) / sine).unsqueeze(1) * start_dir
    blended = blended + (torch.sin(weight * angle) / sine).unsqueeze(1) * end_dir
    blended *= (start_norm * (1.0 - ratio) + end_norm * ratio).expand(-1, channels)
    same = cosine > 1 - 1e-5
    blended[same] = start[same]
    opposite = cosine < 1e-5 - 1
    blended[opposite] = (start * (1.0 - ratio) + end * ratio)[opposite]
    return blended


def _neighbours(old: int, new: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For each of `new` positions: the fractional weight and the two source indices around it.

    Positions come from bilinearly resizing the index ramp, so they sit where torch's bilinear resize
    samples (half-pixel centres); the upper index ramp is clamped at the last pixel.
    """
    lower = torch.arange(old, dtype=torch.float32, device=device).reshape(1, 1, 1, -1)
    lower = F.interpolate(lower, size=(1, new), mode="bilinear")
    weights = lower - lower.floor()
    upper = torch.arange(old, dtype=torch.float32, device=device).reshape(1, 1, 1, -1) + 1
    upper[:, :, :, -1] -= 1
    upper = F.interpolate(upper, size=(1, new), mode="bilinear")
    return weights, lower.to(torch.int64), upper.to(torch.int64)


def bislerp(samples: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """Resize [N, C, H, W] by slerping channel vectors, first along width, then along height."""
    dtype = samples.dtype
    samples = samples.float()
    n, c, h, _ = samples.shape

    weights, lower, upper = _neighbours(samples.shape[-1], width, samples.device)
    lower, upper = lower.expand(n, c, h, -1), upper.expand(n, c, h, -1)
    rows = _slerp_rows(
        samples.gather(-1, lower).movedim(1, -1).reshape(-1, c),
        samples.gather(-1, upper).movedim(1, -1).reshape(-1, c),
        weights.expand(n, 1, h, -1).movedim(1, -1).reshape(-1, 1),
    )
    wide = rows.reshape(n, h, width, c).movedim(-1, 1)

    weights, lower, upper = _neighbours(h, height, samples.device)
    lower = lower.reshape(1, 1, -1, 1).expand(n, c, -1, width)
    upper = upper.reshape(1, 1, -1, 1).expand(n, c, -1, width)
    rows = _slerp_rows(
        wide.gather(-2, lower).movedim(1, -1).reshape(-1, c),
        wide.gather(-2, upper).movedim(1, -1).reshape(-1, c),
        weights.reshape(1, 1, -1, 1).expand(n, 1, -1, width).movedim(1, -1).reshape(-1, 1),
    )
    return rows.reshape(n, height, width, c).movedim(-1, 1).to(dtype)


def lanczos(samples: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """Resize [N, C, H, W] in 0..1 with PIL's Lanczos filter on 8-bit images (quantised, as ComfyUI)."""
    resized = []
    for frame in samples:
        array = np.clip(255.0 * frame.movedim(0, -1).cpu().numpy(), 0, 255).astype(np.uint8)
        image = PILImage.fromarray(array).resize((width, height), resample=PILImage.Resampling.LANCZOS)
        resized.append(torch.from_numpy(np.array(image).astype(np.float32) / 255.0).movedim(-1, 0))
    return torch.stack(resized).to(samples.device, samples.dtype)


def common_upscale(
    samples: torch.Tensor, width: int, height: int, method: UpscaleMethod, crop: CropMethod
) -> torch.Tensor:
    """Resize [N, C, H, W] (or [N, C, T, H, W], frame by frame) to height x width.

    `crop="center"` first trims the source to the target aspect ratio. Torch modes run with torch's
    defaults (no align_corners, no antialias), as ComfyUI calls them.
    """
    shape = tuple(samples.shape)
    if len(shape) == 5:
        samples = samples.movedim(2, 1).reshape(-1, shape[1], shape[-2], shape[-1])
    source = center_crop_to_aspect(samples, width, height) if crop == "center" else samples
    if method == "bislerp":
        out = bislerp(source, width, height)
    elif method == "lanczos":
        out = lanczos(source, width, height)
    else:
        out = F.interpolate(source, size=(height, width), mode=method)
    if len(shape) == 5:
        out = out.reshape(shape[0], shape[2], shape[1], height, width).movedim(1, 2)
    return out


def repeat_to_batch(tensor: torch.Tensor, batch: int) -> torch.Tensor:
    """Cut or tile a tensor along dim 0 to exactly `batch` items."""
    if tensor.shape[0] > batch:
        return tensor[:batch]
    if tensor.shape[0] < batch:
        times = -(-batch // tensor.shape[0])
        return tensor.repeat(times, *([1] * (tensor.ndim - 1)))[:batch]
    return tensor
