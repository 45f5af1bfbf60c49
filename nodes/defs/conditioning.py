"""Conditioning nodes: combine, average, concat, areas, masks, strength, timestep ranges, zero-out.

Each node returns new CondEntry values (conditioning is immutable on edges); the sampler reads the
fields they set (see nodes.sampling.cfg and nodes.sampling.conds).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Literal

import torch

from engine import Input, Node, NodeInputError, NodeInputs, NodeOutputs, Output, RunContext
from nodes.types import CondArea, CondEntry, Conditioning, Mask

MAX_RESOLUTION = 16384
STRENGTH: dict[str, Any] = {"ge": 0.0, "le": 10.0, "step": 0.01}
FRACTION: dict[str, Any] = {"ge": 0.0, "le": 1.0, "step": 0.01}
PIXELS: dict[str, Any] = {"le": MAX_RESOLUTION, "step": 8}


def _out(description: str) -> Any:
    """The single CONDITIONING output slot."""
    return Output(name="CONDITIONING", description=description)


def _with(cond: Conditioning, **changes: object) -> Conditioning:
    """Every entry with some fields replaced."""
    return Conditioning(entries=tuple(replace(e, **changes) for e in cond.entries))  # type: ignore[arg-type]


def _first(cond: Conditioning, node: str) -> CondEntry:
    """The first entry of `conditioning_from` (the only one ComfyUI's average/concat use)."""
    if not cond.entries:
        raise NodeInputError("conditioning_from", f"{node} needs a non-empty conditioning")
    return cond.entries[0]


def average_entry(to: CondEntry, src: CondEntry, to_strength: float) -> CondEntry:
    """to * s + src * (1 - s) over to's token length (src cut or zero-padded); pooled likewise."""
    length = to.embeds.shape[1]
    other = src.embeds[:, :length]
    if other.shape[1] < length:
        pad = torch.zeros((1, length - other.shape[1], to.embeds.shape[2]), dtype=other.dtype)
        other = torch.cat([other, pad], dim=1)
    embeds = to.embeds * to_strength + other * (1.0 - to_strength)
    pooled = to.pooled
    if src.pooled is not None:
        own = to.pooled if to.pooled is not None else src.pooled
        pooled = own * to_strength + src.pooled * (1.0 - to_strength)
    return replace(to, embeds=embeds, pooled=pooled)


class ConditioningCombine(Node):
    """Both conditionings' entries in one list: the sampler evaluates each and averages them."""

    class_type = "ConditioningCombine"
    display_name = "Conditioning (Combine)"
    category = "conditioning"
    description = "Joins two conditionings; the sampler evaluates every entry and blends the predictions."

    class Inputs(NodeInputs):
        conditioning_1: Conditioning = Input(description="The first conditioning.")
        conditioning_2: Conditioning = Input(description="The second conditioning, listed after the first.")

    class Outputs(NodeOutputs):
        CONDITIONING: Conditioning = _out("The entries of both inputs.")

    def run(self, ctx: RunContext, inputs: Inputs) -> Outputs:
        """Concatenate the entry lists."""
        entries = inputs.conditioning_1.entries + inputs.conditioning_2.entries
        return self.Outputs(CONDITIONING=Conditioning(entries=entries))


class ConditioningAverage(Node):
    """Interpolates each target entry's embeddings toward the first source entry's."""

    class_type = "ConditioningAverage"
    category = "conditioning"
    description = "Blends the token embeddings (and pooled output) of two conditionings."

    class Inputs(NodeInputs):
        conditioning_to: Conditioning = Input(description="The conditioning whose entries are blended.")
        conditioning_from: Conditioning = Input(description="Blended in; only its first entry is used.")
        conditioning_to_strength: float = Input(
            1.0, description="Share of conditioning_to in the blend (1 keeps it unchanged).", **FRACTION
        )

    class Outputs(NodeOutputs):
        CONDITIONING: Conditioning = _out("The blended conditioning.")

    def run(self, ctx: RunContext, inputs: Inputs) -> Outputs:
        """Weighted sum per entry of conditioning_to."""
        src = _first(inputs.conditioning_from, self.class_type)
        s = inputs.conditioning_to_strength
        entries = tuple(average_entry(e, src, s) for e in inputs.conditioning_to.entries)
        return self.Outputs(CONDITIONING=Conditioning(entries=entries))


class ConditioningConcat(Node):
    """Appends the first source entry's tokens to each target entry (longer context, one prediction)."""

    class_type = "ConditioningConcat"
    display_name = "Conditioning (Concat)"
    category = "conditioning"
    description = "Appends one conditioning's tokens after another's along the token axis."

    class Inputs(NodeInputs):
        conditioning_to: Conditioning = Input(description="The conditioning the tokens are appended to.")
        conditioning_from: Conditioning = Input(description="Appended; only its first entry is used.")

    class Outputs(NodeOutputs):
        CONDITIONING: Conditioning = _out("The longer conditioning.")

    def run(self, ctx: RunContext, inputs: Inputs) -> Outputs:
        """Concatenate embeddings along the token axis; everything else stays conditioning_to's."""
        src = _first(inputs.conditioning_from, self.class_type).embeds
        entries = []
        for e in inputs.conditioning_to.entries:
            if e.embeds.shape[2] != src.shape[2]:
                raise NodeInputError(
                    "conditioning_from",
                    f"token width {src.shape[2]} differs from conditioning_to's {e.embeds.shape[2]} "
                    "(conditionings of different model families)",
                )
            entries.append(replace(e, embeds=torch.cat([e.embeds, src.to(e.embeds.dtype)], dim=1)))
        return self.Outputs(CONDITIONING=Conditioning(entries=tuple(entries)))


class ConditioningSetArea(Node):
    """Limits a conditioning to a rectangle of the image (in pixels, snapped to the latent grid)."""

    class_type = "ConditioningSetArea"
    display_name = "Conditioning (Set Area)"
    category = "conditioning"
    description = "Applies the conditioning only inside a rectangle; ramps blend its inner edges."

    class Inputs(NodeInputs):
        conditioning: Conditioning = Input(description="The conditioning to place.")
        width: int = Input(64, ge=64, description="Width of the rectangle in pixels.", **PIXELS)
        height: int = Input(64, ge=64, description="Height of the rectangle in pixels.", **PIXELS)
        x: int = Input(0, ge=0, description="Left edge of the rectangle in pixels.", **PIXELS)
        y: int = Input(0, ge=0, description="Top edge of the rectangle in pixels.", **PIXELS)
        strength: float = Input(1.0, description="Weight of this conditioning in the blend.", **STRENGTH)

    class Outputs(NodeOutputs):
        CONDITIONING: Conditioning = _out("The conditioning with its area.")

    def run(self, ctx: RunContext, inputs: Inputs) -> Outputs:
        """Store the area in latent pixels (pixels // 8)."""
        i = inputs
        area = CondArea(i.height // 8, i.width // 8, i.y // 8, i.x // 8)
        return self.Outputs(
            CONDITIONING=_with(i.conditioning, area=area, strength=i.strength, set_area_to_bounds=False)
        )


class ConditioningSetAreaPercentage(Node):
    """Limits a conditioning to a rectangle given as fractions of the image size."""

    class_type = "ConditioningSetAreaPercentage"
    display_name = "Conditioning (Set Area with Percentage)"
    category = "conditioning"
    description = "Applies the conditioning only inside a rectangle sized relative to the image."

    class Inputs(NodeInputs):
        conditioning: Conditioning = Input(description="The conditioning to place.")
        width: float = Input(
            1.0, description="Width of the rectangle as a fraction of the image.", **FRACTION
        )
        height: float = Input(
            1.0, description="Height of the rectangle as a fraction of the image.", **FRACTION
        )
        x: float = Input(0.0, description="Left edge as a fraction of the image width.", **FRACTION)
        y: float = Input(0.0, description="Top edge as a fraction of the image height.", **FRACTION)
        strength: float = Input(1.0, description="Weight of this conditioning in the blend.", **STRENGTH)

    class Outputs(NodeOutputs):
        CONDITIONING: Conditioning = _out("The conditioning with its relative area.")

    def run(self, ctx: RunContext, inputs: Inputs) -> Outputs:
        """Store the fractions; the sampler rounds them against the latent size."""
        i = inputs
        area = CondArea(i.height, i.width, i.y, i.x, percentage=True)
        return self.Outputs(
            CONDITIONING=_with(i.conditioning, area=area, strength=i.strength, set_area_to_bounds=False)
        )


class ConditioningSetAreaStrength(Node):
    """Sets the blend weight of a conditioning's entries."""

    class_type = "ConditioningSetAreaStrength"
    category = "conditioning"
    description = "Sets how strongly each entry counts when the sampler blends several conditionings."

    class Inputs(NodeInputs):
        conditioning: Conditioning = Input(description="The conditioning to weight.")
        strength: float = Input(1.0, description="Weight of this conditioning in the blend.", **STRENGTH)

    class Outputs(NodeOutputs):
        CONDITIONING: Conditioning = _out("The weighted conditioning.")

    def run(self, ctx: RunContext, inputs: Inputs) -> Outputs:
        """Replace the strength."""
        return self.Outputs(CONDITIONING=_with(inputs.conditioning, strength=inputs.strength))


class ConditioningSetMask(Node):
    """Limits a conditioning to a mask (scaled to the latent when sampling)."""

    class_type = "ConditioningSetMask"
    display_name = "Conditioning (Set Mask)"
    category = "conditioning"
    description = "Applies the conditioning with per-pixel weights from a mask."

    class Inputs(NodeInputs):
        conditioning: Conditioning = Input(description="The conditioning to place.")
        mask: Mask = Input(description="Where the conditioning applies (1 = fully).")
        strength: float = Input(1.0, description="Multiplies the mask's weights.", **STRENGTH)
        set_cond_area: Literal["default", "mask bounds"] = Input(
            "default",
            description="mask bounds: run the model only on the mask's bounding box (faster, more detail "
            "there); default: on the whole image.",
        )

    class Outputs(NodeOutputs):
        CONDITIONING: Conditioning = _out("The masked conditioning.")

    def run(self, ctx: RunContext, inputs: Inputs) -> Outputs:
        """Attach the mask [B, H, W], its strength and the bounds choice."""
        mask = inputs.mask.mask
        if mask.ndim < 3:
            mask = mask.unsqueeze(0)
        cond = _with(
            inputs.conditioning,
            mask=mask,
            mask_strength=inputs.strength,
            set_area_to_bounds=inputs.set_cond_area != "default",
        )
        return self.Outputs(CONDITIONING=cond)


class ConditioningZeroOut(Node):
    """Replaces embeddings and pooled output with zeros (an "empty" conditioning some models expect)."""

    class_type = "ConditioningZeroOut"
    category = "advanced/conditioning"
    description = "Zeroes the token embeddings and pooled output, keeping every other setting."

    class Inputs(NodeInputs):
        conditioning: Conditioning = Input(description="The conditioning to zero.")

    class Outputs(NodeOutputs):
        CONDITIONING: Conditioning = _out("The zeroed conditioning.")

    def run(self, ctx: RunContext, inputs: Inputs) -> Outputs:
        """Zeros of the same shapes."""
        entries = tuple(
            replace(
                e,
                embeds=torch.zeros_like(e.embeds),
                pooled=None if e.pooled is None else torch.zeros_like(e.pooled),
            )
            for e in inputs.conditioning.entries
        )
        return self.Outputs(CONDITIONING=Conditioning(entries=entries))


class ConditioningSetTimestepRange(Node):
    """Limits a conditioning to part of the schedule (0 = first step, 1 = last)."""

    class_type = "ConditioningSetTimestepRange"
    category = "advanced/conditioning"
    description = "Applies the conditioning only between two points of the sampling schedule."

    class Inputs(NodeInputs):
        conditioning: Conditioning = Input(description="The conditioning to limit.")
        start: float = Input(0.0, ge=0.0, le=1.0, step=0.001, description="Where it starts applying (0..1).")
        end: float = Input(1.0, ge=0.0, le=1.0, step=0.001, description="Where it stops applying (0..1).")

    class Outputs(NodeOutputs):
        CONDITIONING: Conditioning = _out("The time-limited conditioning.")

    def run(self, ctx: RunContext, inputs: Inputs) -> Outputs:
        """Store the schedule fractions; the sampler turns them into sigmas."""
        return self.Outputs(
            CONDITIONING=_with(inputs.conditioning, start_percent=inputs.start, end_percent=inputs.end)
        )


NODES = [
    ConditioningCombine,
    ConditioningAverage,
    ConditioningConcat,
    ConditioningSetArea,
    ConditioningSetAreaPercentage,
    ConditioningSetAreaStrength,
    ConditioningSetMask,
    ConditioningZeroOut,
    ConditioningSetTimestepRange,
]
