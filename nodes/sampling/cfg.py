"""Classifier-free guidance in x0 space over a UNet forward, cond and uncond batched in one pass."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

from nodes.sampling.model_sampling import DiscreteModelSampling
from nodes.types import CondEntry

# (x_in, timesteps, embeds, pooled, extras) -> raw UNet output (eps or v), the model handle's contract.
UnetForward = Callable[
    [torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None, Sequence[dict[str, Any]] | None],
    torch.Tensor,
]


def _lcm(a: int, b: int) -> int:
    """Least common multiple of two token lengths."""
    return a * b // math.gcd(a, b)


def pad_embeds_to_common_length(embeds: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Repeat each [B, L, D] along L to the lcm of the lengths (77 and 154 -> 154), as ComfyUI batches them.

    Repeating a prompt's 77-token chunks leaves cross-attention unchanged, so this is exact.
    """
    target = 1
    for e in embeds:
        target = _lcm(target, e.shape[1])
    return [e.repeat(1, target // e.shape[1], 1) for e in embeds]


def _repeat_to_batch(t: torch.Tensor, batch: int) -> torch.Tensor:
    """Repeat a [1, ...] (or [b, ...]) tensor to `batch` items."""
    if t.shape[0] == batch:
        return t
    reps = math.ceil(batch / t.shape[0])
    return t.repeat(reps, *([1] * (t.ndim - 1)))[:batch]


class CfgDenoiser:
    """D(x, sigma) with classifier-free guidance: uncond + (cond - uncond) * cfg on the x0 predictions.

    Each conditioning entry is evaluated and the entries of one side averaged. At cfg == 1 the negative is
    not evaluated and `uncond_denoised` is zeros, unless `uncond_at_cfg_1` (ComfyUI's
    disable_cfg1_optimization, which its CFG++ samplers set because they step along the uncond x0).
    """

    def __init__(
        self,
        unet: UnetForward,
        model_sampling: DiscreteModelSampling,
        positive: Sequence[CondEntry],
        negative: Sequence[CondEntry],
        cfg: float,
        max_batch: int | None = None,
        uncond_at_cfg_1: bool = False,
    ):
        self.unet, self.ms, self.cfg = unet, model_sampling, cfg
        self.positive, self.negative = list(positive), list(negative)
        self.max_batch, self.uncond_at_cfg_1 = max_batch, uncond_at_cfg_1
        self.uncond_denoised: torch.Tensor | None = None

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """x0 prediction with guidance at noisy x and per-item sigma [B]."""
        skip_uncond = math.isclose(self.cfg, 1.0) and not self.uncond_at_cfg_1
        # Uncond first, then cond: the order ComfyUI stacks them in one batch.
        groups = [] if skip_uncond else [self.negative]
        groups.append(self.positive)
        outs = self.denoise_groups(x, sigma, groups)
        cond = outs[-1]
        if skip_uncond:
            self.uncond_denoised = torch.zeros_like(x)
            return cond
        uncond = outs[0]
        self.uncond_denoised = uncond
        return uncond + (cond - uncond) * self.cfg

    def denoise_groups(
        self, x: torch.Tensor, sigma: torch.Tensor, groups: list[list[CondEntry]]
    ) -> list[torch.Tensor]:
        """Average x0 prediction per group, all entries run as [x]*n batched UNet calls."""
        items = [(g, entry) for g, entries in enumerate(groups) for entry in entries]
        per_call = len(items) if self.max_batch is None else max(1, self.max_batch // x.shape[0])
        preds: list[torch.Tensor] = []
        for start in range(0, len(items), per_call):
            preds.extend(self._run_batch(x, sigma, [e for _, e in items[start : start + per_call]]))
        sums = [torch.zeros_like(x) for _ in groups]
        counts = [0] * len(groups)
        for (g, _), pred in zip(items, preds, strict=True):
            sums[g] = sums[g] + pred
            counts[g] += 1
        return [s / c if c > 1 else s for s, c in zip(sums, counts, strict=True)]

    def _run_batch(
        self, x: torch.Tensor, sigma: torch.Tensor, entries: list[CondEntry]
    ) -> list[torch.Tensor]:
        """One UNet call over len(entries) copies of x; returns one x0 prediction per entry."""
        batch, n = x.shape[0], len(entries)
        embeds = pad_embeds_to_common_length([_repeat_to_batch(e.embeds, batch) for e in entries])
        pooled = None
        pooleds = [e.pooled for e in entries if e.pooled is not None]
        if len(pooleds) == n:
            pooled = torch.cat([_repeat_to_batch(p, batch) for p in pooleds])
        extras = [dict(e.extras) for e in entries for _ in range(batch)]
        x_all = torch.cat([x] * n) if n > 1 else x
        sigma_all = torch.cat([sigma] * n) if n > 1 else sigma
        x_in = self.ms.calculate_input(sigma_all, x_all)
        timesteps = self.ms.timestep(sigma_all).float()
        out = self.unet(x_in, timesteps, torch.cat(embeds), pooled, extras)
        denoised = self.ms.calculate_denoised(sigma_all, out.to(x.dtype), x_all)
        return list(denoised.chunk(n))
