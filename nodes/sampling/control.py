"""ControlNet residuals at one model call: the chain of applied controls, each in its sigma range, summed.

Facts followed (ComfyUI's ControlNet.get_control / control_merge, reimplemented): the hint is resized to
the latent's size times 8 ("nearest-exact", centre crop); the control model sees the same scaled input,
timestep and text context as the UNet; each residual is multiplied by the control's strength; a control
whose sigma range excludes the current sigma contributes nothing while earlier ones in its chain still
do; the chain's residuals are added up per UNet skip connection and for the middle block.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Final

import torch

from nodes.diffusion.controlnet import Residuals
from nodes.ops.resize import common_upscale
from nodes.sampling.flow import ModelSampling
from nodes.types import CondEntry, ControlApplication

# Pixels per latent pixel of the SD families' VAEs: the hint is prepared at this multiple of the latent.
COMPRESSION = 8
HINT_RESIZE: Final = "nearest-exact"


# application -> that control model's unscaled residuals for this call (it prepares its own hint).
ControlRunner = Callable[[ControlApplication], Residuals]


@dataclass(frozen=True, eq=False)
class ControlRequest:
    """A model call's control inputs: the shared application, per-item sigma, entries batched, latent shape."""

    control: ControlApplication
    sigma: torch.Tensor
    batched: int


def prepare_hint(hint: torch.Tensor, x_shape: torch.Size, batched: int, multiple: int = 1) -> torch.Tensor:
    """The hint at the latent's pixel size (rounded up to `multiple`), repeated over `batched` entries.

    T2I-Adapters pixel-unshuffle their input, so their hint size is rounded up to the unshuffle factor.
    """
    height = math.ceil(x_shape[-2] * COMPRESSION / multiple) * multiple
    width = math.ceil(x_shape[-1] * COMPRESSION / multiple) * multiple
    out = common_upscale(hint.float(), width, height, HINT_RESIZE, "center")
    return broadcast_hint(out, x_shape[0], batched)


def broadcast_hint(hint: torch.Tensor, batch: int, batched: int) -> torch.Tensor:
    """A multi-image hint fitted to each batched entry's items, then repeated per entry (ComfyUI's rule)."""
    if hint.shape[0] == 1 or hint.shape[0] == batch:
        return hint
    per_entry = batch // batched
    hint = hint[:per_entry]
    if per_entry > hint.shape[0]:
        reps = [hint] * (per_entry // hint.shape[0]) + [hint[: per_entry % hint.shape[0]]]
        hint = torch.cat(reps, dim=0)
    if hint.shape[0] == batch:
        return hint
    return torch.cat([hint] * batched, dim=0)


def in_range(control: ControlApplication, sigma: float, ms: ModelSampling) -> bool:
    """Whether a control acts at this sigma (its percents mapped through the model's schedule)."""
    start, end = ms.percent_to_sigma(control.start_percent), ms.percent_to_sigma(control.end_percent)
    return not (sigma > start or sigma < end)


def chain_residuals(request: ControlRequest, ms: ModelSampling, run: ControlRunner) -> Residuals | None:
    """The summed, strength-scaled residuals of every control in the chain active at this sigma."""
    sigma = float(request.sigma[0])
    total: Residuals | None = None
    for control in request.control.chain():
        if not in_range(control, sigma, ms):
            continue
        total = run(control).scaled(control.strength).plus(total)
    return total


def share_with_uncond(positive: Sequence[CondEntry], negative: Sequence[CondEntry]) -> list[CondEntry]:
    """The negative entries, given the positive side's ControlNetApply controls when none has a control.

    ComfyUI's older ControlNetApply node marks its controls to reach the uncond too: the i-th such
    positive control (entries without an area) goes to the (i mod n)-th negative entry without an area
    and without a control, a later one replacing an earlier one on the same entry.
    """
    out = list(negative)
    shared = [
        e.control for e in positive if e.area is None and e.control is not None and e.control.apply_to_uncond
    ]
    if not shared or any(e.control is not None for e in negative if e.area is None):
        return out
    others = [(i, e) for i, e in enumerate(negative) if e.area is None]
    if not others:
        return out
    for k, control in enumerate(shared):
        index, entry = others[k % len(others)]
        out[index] = replace(entry, control=control)
    return out
