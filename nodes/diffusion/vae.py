"""VAE encode/decode between IMAGE pixels [B,H,W,3] in 0..1 and raw (unscaled) VAE latents.

Decoding is planned against the memory the device has left (`decode_plan`): the whole batch at once
when its estimated peak fits, else one image at a time (same pixels), else in tiles. Tiles overlap and
are blended with linear ramps, so seams fade; GroupNorm statistics differ per tile, so tiled output is
close to, not equal to, the untiled one: it is used only when an image would not fit otherwise, or as
a retry when the device runs out of memory anyway.
"""

from __future__ import annotations

import logging
from typing import Literal

import torch
from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL

from engine import available_memory, is_out_of_memory

log = logging.getLogger(__name__)

# Tile used by the automatic out-of-memory fallback, in latent pixels (512 px image tiles).
FALLBACK_TILE, FALLBACK_OVERLAP = 64, 16
# Peak working memory of decoding one image, per latent pixel and per byte of the compute dtype, for
# the SD-family decoder (its largest activations are 128-512 channels at 8x the latent size). Measured
# as the peak RSS growth of decoding with the full-size SD1.5 VAE in fp32 on the CPU: about 39k at
# 256 px and 53k at 512 px; the figure below leaves ~1.8x for allocator slack and GPU workspaces.
DECODE_BYTES_PER_LATENT_PIXEL = 96_000
# Only this share of the free memory is planned for: other threads and the allocator need room too.
DECODE_MEMORY_SHARE = 0.8
Plan = Literal["whole", "per_image", "tiled"]


def _decode(vae: AutoencoderKL, latents: torch.Tensor) -> torch.Tensor:
    p = next(vae.parameters())
    with torch.inference_mode():
        out = vae.decode(latents.to(p.device, p.dtype), return_dict=False)[0]
    return out.float()


def to_image(decoded: torch.Tensor) -> torch.Tensor:
    """Decoder output [B,3,H,W] in -1..1 -> IMAGE float32 [B,H,W,3] in 0..1 on the CPU."""
    return ((decoded.float() + 1.0) / 2.0).clamp(0.0, 1.0).permute(0, 2, 3, 1).contiguous().cpu()


def _ramp(n: int, overlap: int, start: bool, end: bool) -> torch.Tensor:
    w = torch.ones(n)
    if overlap > 0:
        ramp = torch.arange(1, overlap + 1, dtype=torch.float32) / (overlap + 1)
        if start:
            w[:overlap] = ramp
        if end:
            w[n - overlap :] = ramp.flip(0)
    return w


def _starts(size: int, tile: int, stride: int) -> list[int]:
    if size <= tile:
        return [0]
    starts = list(range(0, size - tile, stride))
    starts.append(size - tile)
    return starts


def decode_tiled(vae: AutoencoderKL, latents: torch.Tensor, tile: int = 64, overlap: int = 8) -> torch.Tensor:
    """Decode in overlapping latent tiles (sizes in latent pixels); returns [B,3,8h,8w] in -1..1."""
    b, _, h, w = latents.shape
    overlap = max(0, min(overlap, tile // 4))
    stride = max(1, tile - overlap)
    out = torch.zeros(b, 3, h * 8, w * 8)
    weight = torch.zeros(1, 1, h * 8, w * 8)
    ys, xs = _starts(h, tile, stride), _starts(w, tile, stride)
    for y in ys:
        for x in xs:
            part = _decode(vae, latents[:, :, y : y + tile, x : x + tile]).cpu()
            th, tw = part.shape[-2:]
            wy = _ramp(th, overlap * 8, y > 0, y + tile < h)
            wx = _ramp(tw, overlap * 8, x > 0, x + tile < w)
            mask = (wy[:, None] * wx[None, :])[None, None]
            out[:, :, y * 8 : y * 8 + th, x * 8 : x * 8 + tw] += part * mask
            weight[:, :, y * 8 : y * 8 + th, x * 8 : x * 8 + tw] += mask
    return out / weight


def decode_bytes(latents: torch.Tensor, dtype: torch.dtype) -> int:
    """Estimated peak working memory of decoding ONE image of `latents` [B, C, h, w] in `dtype`."""
    return DECODE_BYTES_PER_LATENT_PIXEL * latents.shape[-2] * latents.shape[-1] * dtype.itemsize


def decode_plan(latents: torch.Tensor, dtype: torch.dtype, available: int | None) -> tuple[Plan, int]:
    """How to decode: ("whole"|"per_image"|"tiled", tile size in latent pixels for "tiled").

    `available` is the device's free memory (None: unknown, decode whole and rely on the retry).
    """
    one = decode_bytes(latents, dtype)
    if available is None or one * latents.shape[0] <= available * DECODE_MEMORY_SHARE:
        return "whole", 0
    if one <= available * DECODE_MEMORY_SHARE:
        return "per_image", 0
    tile = FALLBACK_TILE
    while (
        tile > 16
        and DECODE_BYTES_PER_LATENT_PIXEL * tile * tile * dtype.itemsize > available * DECODE_MEMORY_SHARE
    ):
        tile //= 2
    return "tiled", tile


def decode(vae: AutoencoderKL, latents: torch.Tensor, available: int | None = None) -> torch.Tensor:
    """IMAGE [B,H,W,3] from raw latents, tiled only when the device's free memory calls for it.

    `available` overrides the measured free memory (bytes). The whole-batch decode still retries in
    tiles when the device runs out of memory despite the plan.
    """
    p = next(vae.parameters())
    free = available if available is not None else available_memory(p.device)
    plan, tile = decode_plan(latents, p.dtype, free)
    if plan != "whole":
        log.info("VAE decode of %s in %s (free memory %s bytes)", tuple(latents.shape), plan, free)
    if plan == "per_image":
        return torch.cat([to_image(_decode(vae, item[None])) for item in latents])
    if plan == "tiled":
        return to_image(decode_tiled(vae, latents, tile, max(tile // 4, 4)))
    try:
        return to_image(_decode(vae, latents))
    except (torch.OutOfMemoryError, RuntimeError) as exc:
        if not is_out_of_memory(exc):
            raise
        log.warning("VAE decode ran out of memory; retrying with %d px tiles", FALLBACK_TILE * 8)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        return to_image(decode_tiled(vae, latents, FALLBACK_TILE, FALLBACK_OVERLAP))


def encode(vae: AutoencoderKL, pixels: torch.Tensor) -> torch.Tensor:
    """Raw latents [B,4,H/8,W/8] (distribution mode) from IMAGE [B,H,W,3]; crops H, W to multiples of 8."""
    h, w = (pixels.shape[1] // 8) * 8, (pixels.shape[2] // 8) * 8
    if (h, w) != tuple(pixels.shape[1:3]):
        dy, dx = (pixels.shape[1] % 8) // 2, (pixels.shape[2] % 8) // 2
        pixels = pixels[:, dy : dy + h, dx : dx + w]
    p = next(vae.parameters())
    x = pixels[..., :3].permute(0, 3, 1, 2).to(p.device, p.dtype) * 2.0 - 1.0
    with torch.inference_mode():
        dist = vae.encode(x, return_dict=False)[0]
    return dist.mode().float().cpu()
