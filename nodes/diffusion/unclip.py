"""unCLIP's image conditioning: the noise-augmented CLIP image embedding that SD2.1 unCLIP adds to time.

Each image embedding is noised to a chosen level on the squared-cosine schedule (1000 steps, as
ComfyUI's CLIPEmbeddingNoiseAugmentation with identity data statistics), then concatenated with a
sinusoidal embedding of that level and scaled by the strength. Several embeddings are summed and the
sum noised again at the merge level (ComfyUI's `unclip_noise_augment_merge`, 0.05 by default). The
noise is drawn on the CPU from the sampling seed minus 10, as ComfyUI draws it, so a seed means the
same result everywhere. ComfyUI draws the second (merge) noise from torch's global generator, which
no seed controls; here it comes from the same seeded generator, continuing after the first draws.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np
import torch

SCHEDULE_STEPS = 1000
MERGE_LEVEL = 0.05
SEED_OFFSET = -10


@dataclass(frozen=True, eq=False)
class UnclipImage:
    """One unCLIPConditioning application: image embeddings [N, D], its strength and noise level (0..1)."""

    image_embeds: torch.Tensor
    strength: float
    noise_augmentation: float


@cache
def _noise_coefficients() -> tuple[torch.Tensor, torch.Tensor]:
    """sqrt(alpha_bar) and sqrt(1 - alpha_bar) per level, float64 maths then float32 as ComfyUI keeps them."""

    def alpha_bar(t: float) -> float:
        return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

    betas = np.array(
        [
            min(1 - alpha_bar((i + 1) / SCHEDULE_STEPS) / alpha_bar(i / SCHEDULE_STEPS), 0.999)
            for i in range(SCHEDULE_STEPS)
        ]
    )
    cumprod = np.cumprod(1.0 - betas)
    return (
        torch.tensor(np.sqrt(cumprod), dtype=torch.float32),
        torch.tensor(np.sqrt(1.0 - cumprod), dtype=torch.float32),
    )


def level_embedding(level: int, dim: int) -> torch.Tensor:
    """Sinusoidal embedding [1, dim] of a noise level: cosines then sines, max period 10000."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / half)
    args = torch.tensor([float(level)])[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return torch.cat([emb, torch.zeros(1, dim % 2)], dim=-1)


def augment(embeds: torch.Tensor, fraction: float, generator: torch.Generator) -> torch.Tensor:
    """[1, D] embedding noised to round(999 * fraction), with its level embedding appended: [1, 2D]."""
    level = round((SCHEDULE_STEPS - 1) * fraction)
    signal, noise_scale = _noise_coefficients()
    noise = torch.randn(embeds.shape, dtype=embeds.dtype, generator=generator)
    noised = signal[level] * embeds + noise_scale[level] * noise
    return torch.cat([noised, level_embedding(level, embeds.shape[-1])], dim=1)


def unclip_adm(images: Sequence[UnclipImage], seed: int, dim: int) -> torch.Tensor:
    """The [1, 2 * dim] vector the unCLIP UNet takes; zeros when no image conditions it."""
    if not images:
        return torch.zeros(1, 2 * dim)
    rows = [(row, image) for image in images for row in image.image_embeds.float().cpu()]
    for row, _ in rows:
        if row.shape[-1] != dim:
            raise ValueError(f"image embedding has {row.shape[-1]} values; this unCLIP model takes {dim}")
    generator = torch.Generator().manual_seed(seed + SEED_OFFSET)
    outs = []
    for row, image in rows:
        # Each application re-seeds, as ComfyUI seeds every embedding's draw with the same value.
        generator.manual_seed(seed + SEED_OFFSET)
        outs.append(augment(row[None], image.noise_augmentation, generator) * image.strength)
    if len(outs) == 1:
        return outs[0]
    merged = torch.stack(outs).sum(0)
    return augment(merged[:, :dim], MERGE_LEVEL, generator)


def batch_adm(items: Iterable[Sequence[UnclipImage]], seed: int, dim: int) -> torch.Tensor:
    """unclip_adm for every batch item: [B, 2 * dim]."""
    return torch.cat([unclip_adm(images, seed, dim) for images in items])
