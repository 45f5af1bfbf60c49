"""Guidance rules: a GUIDER's conditionings and scales turned into one x0 prediction per model call."""

from __future__ import annotations

import math

import torch

from engine import UserFacingError
from nodes.diffusion.unet_patches import ModelOptions
from nodes.sampling.cfg import CfgDenoiser, UnetForward
from nodes.sampling.conds import InpaintSource
from nodes.sampling.flow import ModelSampling
from nodes.types import Guider


class DualCfgDenoiser:
    """Two guidance scales over three conditionings (ComfyUI's DualCFGGuider).

    regular: negative + (middle - negative) * cfg2 + (positive - middle) * cfg, skipping the negative
    when cfg2 is 1 and then also the middle when cfg is 1 (unless the sampler needs the uncond).
    nested: negative + cfg2 * ((middle + (positive - middle) * cfg) - negative).
    """

    def __init__(self, base: CfgDenoiser, guider: Guider, nested: bool, uncond_at_cfg_1: bool):
        self.base, self.nested = base, nested
        self.cfg, self.cfg2 = guider.cfg, guider.cfg2
        self.groups = [list(guider.conds[role].entries) for role in ("negative", "middle", "positive")]
        self.uncond_at_cfg_1 = uncond_at_cfg_1
        self.uncond_denoised: torch.Tensor | None = None

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """x0 prediction with both guidance scales applied."""
        groups = list(self.groups)
        if not self.nested and not self.uncond_at_cfg_1 and math.isclose(self.cfg2, 1.0):
            # Skipped groups count as zero predictions, which the formula then weights by zero.
            groups[0] = []
            if math.isclose(self.cfg, 1.0):
                groups[1] = []
        live = [g for g in groups if g]
        preds = iter(self.base.denoise_groups(x, sigma, live))
        negative, middle, positive = (next(preds) if g else torch.zeros_like(x) for g in groups)
        if self.nested:
            text = middle + (positive - middle) * self.cfg
            self.uncond_denoised = middle
            return negative + self.cfg2 * (text - negative)
        self.uncond_denoised = negative
        return negative + (middle - negative) * self.cfg2 + (positive - middle) * self.cfg


def guider_denoiser(
    guider: Guider,
    unet: UnetForward,
    ms: ModelSampling,
    uncond_at_cfg_1: bool,
    inpaint: InpaintSource | None = None,
    options: ModelOptions | None = None,
) -> CfgDenoiser | DualCfgDenoiser:
    """The denoiser a guider describes; `uncond_at_cfg_1` for samplers that step along the uncond x0.

    `inpaint` carries a 9-channel inpainting UNet's extra inputs (None for other models); `options`
    the run's model-patch table (None for an unpatched model).
    """
    conds = guider.conds
    if guider.kind == "basic":
        # No negative exists: guidance is off and the uncond prediction reads as zeros.
        return CfgDenoiser(unet, ms, conds["positive"].entries, (), 1.0, inpaint=inpaint, options=options)
    if guider.kind == "cfg":
        return CfgDenoiser(
            unet,
            ms,
            conds["positive"].entries,
            conds["negative"].entries,
            guider.cfg,
            uncond_at_cfg_1=uncond_at_cfg_1,
            inpaint=inpaint,
            options=options,
        )
    if options is not None and (
        options.sampler_cfg_function or options.sampler_pre_cfg_function or options.sampler_post_cfg_function
    ):
        raise UserFacingError(
            f"the {guider.kind} guider does not take guidance patches (RescaleCFG, PAG, SAG...); "
            "use CFGGuider or KSampler with a patched model"
        )
    base = CfgDenoiser(unet, ms, (), (), 1.0, inpaint=inpaint, options=options)
    return DualCfgDenoiser(base, guider, guider.kind == "dual_cfg_nested", uncond_at_cfg_1)
