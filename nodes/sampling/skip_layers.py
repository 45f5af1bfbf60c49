"""Skip Layer Guidance: after CFG, push x0 away from what the model predicts with some blocks skipped.

Facts followed (ComfyUI's SkipLayerGuidanceDiT post-CFG step, reimplemented): only the positive
conditioning is run again, with the named transformer blocks passed over; the guided x0 gains
(cond x0 - skipped x0) * scale while the first item's sigma lies in the window [sigma_end, sigma_start].
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import torch

from nodes.sampling.cfg import CfgDenoiser, UnetForward
from nodes.types import SkipLayerGuidance


def parse_layers(text: str) -> tuple[int, ...]:
    """Block indices from free text ("7, 8, 9"): every run of digits, in order."""
    return tuple(int(n) for n in re.findall(r"\d+", text))


class SkipLayerDenoiser:
    """A CFG denoiser followed by Skip Layer Guidance passes (one per SkipLayerGuidanceSD3 node)."""

    def __init__(
        self,
        base: CfgDenoiser,
        guidances: Sequence[SkipLayerGuidance],
        skipping_unet: Callable[[tuple[int, ...]], UnetForward],
    ):
        self.base, self.guidances, self.skipping_unet = base, list(guidances), skipping_unet
        # CFG's uncond x0 (for CFG++ samplers), unchanged by the extra passes.
        self.uncond_denoised: torch.Tensor | None = None

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """Guided x0, then each active skip-layer correction in order."""
        result = self.base(x, sigma)
        self.uncond_denoised = self.base.uncond_denoised
        level = float(sigma[0])
        for slg in self.guidances:
            if slg.scale <= 0 or not (slg.sigma_end <= level <= slg.sigma_start):
                continue
            (positive,) = self.base.resolve([self.base.positive], x.shape, ("positive",))
            (skipped,) = self.base.calc_cond_batch([positive], x, sigma, unet=self.skipping_unet(slg.layers))
            assert self.base.cond_denoised is not None
            result = result + (self.base.cond_denoised - skipped) * slg.scale
        return result
