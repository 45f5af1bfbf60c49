"""Latent batches and geometry: batching, picking, repeating, seed behaviour, crop, flip, rotate, noise mask."""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

import torch

from engine import Input, Node, NodeInputs, RunContext
from nodes.defs.latent_ops import MAX_RESOLUTION, LatentOut
from nodes.ops.latent import match_latent, repeat_batch_index, tile_masks
from nodes.ops.resize import repeat_to_batch
from nodes.types import Latent, Mask


class LatentBatch(Node):
    """Concatenates two latent batches."""

    class_type = "LatentBatch"
    category = "latent/batch"
    description = "One batch: samples1's items, then samples2's (resized to match)."

    class Inputs(NodeInputs):
        samples1: Latent = Input(description="The first items of the batch.")
        samples2: Latent = Input(description="The items appended (resized to samples1's size).")

    Outputs = LatentOut

    def run(self, ctx: RunContext, inputs: Inputs) -> LatentOut:
        """Noise indices concatenate too, each side defaulting to 0..n-1."""
        first, second = inputs.samples1, inputs.samples2
        resized = match_latent(first.samples.shape, second.samples, repeat_batch=False)
        indices = (first.batch_index or tuple(range(first.samples.shape[0]))) + (
            second.batch_index or tuple(range(resized.shape[0]))
        )
        joined = torch.cat((first.samples, resized), dim=0)
        return LatentOut(LATENT=replace(first, samples=joined, batch_index=indices))


class LatentFromBatch(Node):
    """Picks a run of items out of a latent batch."""

    class_type = "LatentFromBatch"
    display_name = "Latent From Batch"
    category = "latent/batch"
    description = "Take `length` items starting at batch_index (clamped to the batch)."

    class Inputs(NodeInputs):
        samples: Latent = Input(description="The batch to pick from.")
        batch_index: int = Input(0, ge=0, le=63, description="The first item taken (0-based).")
        length: int = Input(1, ge=1, le=64, description="How many items to take.")

    Outputs = LatentOut

    def run(self, ctx: RunContext, inputs: Inputs) -> LatentOut:
        """Items keep their original noise indices, so they sample as they did inside the batch."""
        latent = inputs.samples
        count = latent.samples.shape[0]
        start = min(count - 1, inputs.batch_index)
        length = min(count - start, inputs.length)
        mask = latent.noise_mask
        if mask is not None:
            mask = (
                mask.clone()
                if mask.shape[0] == 1
                else tile_masks(mask, count)[start : start + length].clone()
            )
        indices = (
            latent.batch_index[start : start + length]
            if latent.batch_index
            else tuple(range(start, start + length))
        )
        picked = latent.samples[start : start + length].clone()
        return LatentOut(LATENT=replace(latent, samples=picked, noise_mask=mask, batch_index=indices))


class RepeatLatentBatch(Node):
    """Repeats a latent batch."""

    class_type = "RepeatLatentBatch"
    display_name = "Repeat Latent Batch"
    category = "latent/batch"
    description = "The whole batch, `amount` times over."

    class Inputs(NodeInputs):
        samples: Latent = Input(description="The batch to repeat.")
        amount: int = Input(1, ge=1, le=64, description="How many copies.")

    Outputs = LatentOut

    def run(self, ctx: RunContext, inputs: Inputs) -> LatentOut:
        """A per-item noise mask repeats along; given noise indices are shifted per copy."""
        latent, amount = inputs.samples, inputs.amount
        samples = latent.samples.repeat(amount, *([1] * (latent.samples.ndim - 1)))
        mask = latent.noise_mask
        if mask is not None and mask.shape[0] > 1:
            mask = mask.repeat(amount, *([1] * (mask.ndim - 1)))
        indices = repeat_batch_index(latent.batch_index, amount) if latent.batch_index else None
        return LatentOut(LATENT=replace(latent, samples=samples, noise_mask=mask, batch_index=indices))


class LatentBatchSeedBehavior(Node):
    """Chooses whether batch items get their own noise or share the first item's."""

    class_type = "LatentBatchSeedBehavior"
    category = "latent/advanced"
    description = "fixed: every item gets the same noise; random: each item its own."

    class Inputs(NodeInputs):
        samples: Latent = Input(description="The batch.")
        seed_behavior: Literal["random", "fixed"] = Input("fixed", description="How noise is drawn per item.")

    Outputs = LatentOut

    def run(self, ctx: RunContext, inputs: Inputs) -> LatentOut:
        """fixed repeats the first noise index; random drops the indices (items 0..n-1)."""
        latent = inputs.samples
        if inputs.seed_behavior == "random":
            return LatentOut(LATENT=replace(latent, batch_index=None))
        first = latent.batch_index[0] if latent.batch_index else 0
        return LatentOut(LATENT=replace(latent, batch_index=(first,) * latent.samples.shape[0]))


class LatentCrop(Node):
    """Crops a latent to a pixel rectangle."""

    class_type = "LatentCrop"
    display_name = "Crop Latent"
    category = "latent/transform"
    description = "Keep the rectangle at (x, y) of the given pixel size."

    class Inputs(NodeInputs):
        samples: Latent = Input(description="The latent to crop.")
        width: int = Input(512, ge=64, le=MAX_RESOLUTION, step=8, description="Width kept, in pixels.")
        height: int = Input(512, ge=64, le=MAX_RESOLUTION, step=8, description="Height kept, in pixels.")
        x: int = Input(0, ge=0, le=MAX_RESOLUTION, step=8, description="Left edge, in pixels.")
        y: int = Input(0, ge=0, le=MAX_RESOLUTION, step=8, description="Top edge, in pixels.")

    Outputs = LatentOut

    def run(self, ctx: RunContext, inputs: Inputs) -> LatentOut:
        """The origin is pulled in so at least 8 cells (64 px) remain on each axis."""
        samples = inputs.samples.samples
        x = min(inputs.x // 8, samples.shape[3] - 8)
        y = min(inputs.y // 8, samples.shape[2] - 8)
        cropped = samples[:, :, y : y + inputs.height // 8, x : x + inputs.width // 8]
        return LatentOut(LATENT=replace(inputs.samples, samples=cropped))


class LatentFlip(Node):
    """Mirrors a latent."""

    class_type = "LatentFlip"
    display_name = "Flip Latent"
    category = "latent/transform"
    description = "Mirror the latent top-bottom or left-right."

    class Inputs(NodeInputs):
        samples: Latent = Input(description="The latent to mirror.")
        flip_method: Literal["x-axis: vertically", "y-axis: horizontally"] = Input(
            "x-axis: vertically", description="The mirror axis."
        )

    Outputs = LatentOut

    def run(self, ctx: RunContext, inputs: Inputs) -> LatentOut:
        """x-axis flips rows, y-axis flips columns."""
        dim = 2 if inputs.flip_method.startswith("x") else 3
        return LatentOut(
            LATENT=replace(inputs.samples, samples=torch.flip(inputs.samples.samples, dims=[dim]))
        )


class LatentRotate(Node):
    """Rotates a latent by quarter turns."""

    class_type = "LatentRotate"
    display_name = "Rotate Latent"
    category = "latent/transform"
    description = "Rotate the latent clockwise by 90, 180 or 270 degrees."

    class Inputs(NodeInputs):
        samples: Latent = Input(description="The latent to rotate.")
        rotation: Literal["none", "90 degrees", "180 degrees", "270 degrees"] = Input(
            "none", description="The clockwise rotation."
        )

    Outputs = LatentOut

    def run(self, ctx: RunContext, inputs: Inputs) -> LatentOut:
        """Quarter turns from width towards height (clockwise on screen)."""
        turns = {"none": 0, "90 degrees": 1, "180 degrees": 2, "270 degrees": 3}[inputs.rotation]
        rotated = torch.rot90(inputs.samples.samples, k=turns, dims=[3, 2])
        return LatentOut(LATENT=replace(inputs.samples, samples=rotated))


class SetLatentNoiseMask(Node):
    """Attaches a mask that limits where the sampler changes the latent."""

    class_type = "SetLatentNoiseMask"
    display_name = "Set Latent Noise Mask"
    category = "latent/inpaint"
    description = "Only the masked (1) area is re-noised and denoised by samplers downstream."

    class Inputs(NodeInputs):
        samples: Latent = Input(description="The latent to inpaint.")
        mask: Mask = Input(description="Where the sampler may change the latent (1) or must keep it (0).")

    Outputs = LatentOut

    def run(self, ctx: RunContext, inputs: Inputs) -> LatentOut:
        """Stored as [B, 1, H, W] at the mask's own resolution; the sampler resizes it."""
        mask = inputs.mask.mask
        noise_mask = mask.reshape(-1, 1, mask.shape[-2], mask.shape[-1])
        return LatentOut(LATENT=replace(inputs.samples, noise_mask=noise_mask))


class LatentConcat(Node):
    """Joins two latents side by side, stacked, or along time."""

    class_type = "LatentConcat"
    category = "latent/advanced"
    description = "Concatenate samples2 after (or, with a minus sign, before) samples1 along x, y or t."

    class Inputs(NodeInputs):
        samples1: Latent = Input(description="The first latent.")
        samples2: Latent = Input(description="The latent joined (its batch matched to samples1's).")
        dim: Literal["x", "-x", "y", "-y", "t", "-t"] = Input(
            "x", description="Axis, and order when negative."
        )

    Outputs = LatentOut

    def run(self, ctx: RunContext, inputs: Inputs) -> LatentOut:
        """x is the last axis, y the one before, t the one before that."""
        first = inputs.samples1.samples
        second = repeat_to_batch(inputs.samples2.samples, first.shape[0])
        parts = (second, first) if "-" in inputs.dim else (first, second)
        axis = {"x": -1, "y": -2, "t": -3}[inputs.dim[-1]]
        return LatentOut(LATENT=replace(inputs.samples1, samples=torch.cat(parts, dim=axis)))


class LatentCut(Node):
    """Cuts a run of rows, columns or frames out of a latent."""

    class_type = "LatentCut"
    category = "latent/advanced"
    description = "Keep `amount` cells from `index` along x, y or t (negative index counts from the end)."

    class Inputs(NodeInputs):
        samples: Latent = Input(description="The latent to cut.")
        dim: Literal["x", "y", "t"] = Input("x", description="The axis.")
        index: int = Input(0, ge=-MAX_RESOLUTION, le=MAX_RESOLUTION, step=1, description="First cell kept.")
        amount: int = Input(1, ge=1, le=MAX_RESOLUTION, step=1, description="How many cells.")

    Outputs = LatentOut

    def run(self, ctx: RunContext, inputs: Inputs) -> LatentOut:
        """Index and amount are clamped to the axis."""
        samples = inputs.samples.samples
        axis = samples.ndim - {"x": 1, "y": 2, "t": 3}[inputs.dim]
        size = samples.shape[axis]
        if inputs.index >= 0:
            index = min(inputs.index, size - 1)
            amount = min(size - index, inputs.amount)
        else:
            index = max(inputs.index, -size)
            amount = min(-index, inputs.amount)
        return LatentOut(LATENT=replace(inputs.samples, samples=torch.narrow(samples, axis, index, amount)))


NODES = [
    LatentBatch,
    LatentFromBatch,
    RepeatLatentBatch,
    LatentBatchSeedBehavior,
    LatentCrop,
    LatentFlip,
    LatentRotate,
    SetLatentNoiseMask,
    LatentConcat,
    LatentCut,
]
