"""Initial noise from a seed exactly as ComfyUI draws it: CPU generator, whole batch or per batch_index."""

from __future__ import annotations

import torch

SEED_MAX = 2**64 - 1


def seeded_generator(seed: int, device: str | torch.device = "cpu") -> torch.Generator:
    """A generator seeded like torch.manual_seed(seed); seeds 2^63..2^64-1 are valid (uint64)."""
    if not 0 <= seed <= SEED_MAX:
        raise ValueError(f"seed {seed} is outside 0..{SEED_MAX}")
    return torch.Generator(device=device).manual_seed(seed)


def prepare_noise(
    latents: torch.Tensor, seed: int, batch_index: tuple[int, ...] | None = None
) -> torch.Tensor:
    """Standard normal noise with the latents' shape and dtype, drawn on the CPU from the seed.

    Without batch_index the whole batch is one draw. With it, [1, ...] draws are made in order for
    i = 0..max(index) and item k takes draw batch_index[k] (duplicates share a draw), so an item keeps
    its noise when it is split out of a batch.
    """
    generator = seeded_generator(seed)
    if batch_index is None:
        return torch.randn(latents.shape, dtype=latents.dtype, layout=latents.layout, generator=generator)
    draws: dict[int, torch.Tensor] = {}
    wanted = set(batch_index)
    for i in range(max(batch_index) + 1):
        draw = torch.randn(
            [1, *latents.shape[1:]], dtype=latents.dtype, layout=latents.layout, generator=generator
        )
        if i in wanted:
            draws[i] = draw
    return torch.cat([draws[i] for i in batch_index], dim=0)
