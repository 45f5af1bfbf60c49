"""Latent transforms: upscaling, compositing, blending, arithmetic, batches, crops, flips and noise masks."""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

from engine import Input, Node, NodeInputs, NodeOutputs, Output, RunContext
from nodes.ops.latent import feathered_paste, interpolate_latents, masked_composite, match_latent
from nodes.ops.resize import common_upscale
from nodes.types import Latent, Mask

MAX_RESOLUTION = 16384
LatentUpscaleMethod = Literal["nearest-exact", "bilinear", "area", "bicubic", "bislerp"]
METHOD_TIP = "How new latent cells are computed; bislerp blends channel vectors spherically."


class LatentOut(NodeOutputs):
    """The single LATENT output of every node here."""

    LATENT: Latent = Output(name="LATENT", description="The resulting latent.")


class LatentUpscale(Node):
    """Resizes a latent to a pixel size (divided by 8), optionally cropping to the new aspect first."""

    class_type = "LatentUpscale"
    display_name = "Upscale Latent"
    category = "latent"
    description = "Resize a latent to the given pixel size; 0 on one side keeps the aspect ratio."

    class Inputs(NodeInputs):
        samples: Latent = Input(description="The latent to resize.")
        upscale_method: LatentUpscaleMethod = Input("nearest-exact", description=METHOD_TIP)
        width: int = Input(
            512, ge=0, le=MAX_RESOLUTION, step=8, description="Target width in pixels (0: from height)."
        )
        height: int = Input(
            512, ge=0, le=MAX_RESOLUTION, step=8, description="Target height in pixels (0: from width)."
        )
        crop: Literal["disabled", "center"] = Input(
            "disabled", description="center: trim to the new aspect first."
        )

    Outputs = LatentOut

    def run(self, ctx: RunContext, inputs: Inputs) -> LatentOut:
        """At least 64 px a side; a zero side follows the source's aspect ratio."""
        samples = inputs.samples.samples
        width, height = inputs.width, inputs.height
        if width == 0 and height == 0:
            return LatentOut(LATENT=inputs.samples)
        if width == 0:
            height = max(64, height)
            width = max(64, round(samples.shape[-1] * height / samples.shape[-2]))
        elif height == 0:
            width = max(64, width)
            height = max(64, round(samples.shape[-2] * width / samples.shape[-1]))
        else:
            width, height = max(64, width), max(64, height)
        scaled = common_upscale(samples, width // 8, height // 8, inputs.upscale_method, inputs.crop)
        return LatentOut(LATENT=replace(inputs.samples, samples=scaled))


class LatentUpscaleBy(Node):
    """Resizes a latent by a factor."""

    class_type = "LatentUpscaleBy"
    display_name = "Upscale Latent By"
    category = "latent"
    description = "Resize a latent by a factor (each side rounded to whole latent cells)."

    class Inputs(NodeInputs):
        samples: Latent = Input(description="The latent to resize.")
        upscale_method: LatentUpscaleMethod = Input("nearest-exact", description=METHOD_TIP)
        scale_by: float = Input(
            1.5, ge=0.01, le=8.0, step=0.01, description="The factor applied to both sides."
        )

    Outputs = LatentOut

    def run(self, ctx: RunContext, inputs: Inputs) -> LatentOut:
        """Sides rounded half-to-even, as Python's round."""
        samples = inputs.samples.samples
        width = round(samples.shape[-1] * inputs.scale_by)
        height = round(samples.shape[-2] * inputs.scale_by)
        scaled = common_upscale(samples, width, height, inputs.upscale_method, "disabled")
        return LatentOut(LATENT=replace(inputs.samples, samples=scaled))


class LatentComposite(Node):
    """Pastes one latent into another at a pixel offset, with optional feathered inner edges."""

    class_type = "LatentComposite"
    display_name = "Latent Composite"
    category = "latent"
    description = "Paste samples_from into samples_to at (x, y); feather softens edges inside the target."

    class Inputs(NodeInputs):
        samples_to: Latent = Input(description="The latent pasted into.")
        samples_from: Latent = Input(description="The latent pasted.")
        x: int = Input(0, ge=0, le=MAX_RESOLUTION, step=8, description="Left edge of the paste, in pixels.")
        y: int = Input(0, ge=0, le=MAX_RESOLUTION, step=8, description="Top edge of the paste, in pixels.")
        feather: int = Input(
            0, ge=0, le=MAX_RESOLUTION, step=8, description="Width of the edge blend, in pixels."
        )

    Outputs = LatentOut

    def run(self, ctx: RunContext, inputs: Inputs) -> LatentOut:
        """Offsets and feather are divided by 8 (latent cells)."""
        pasted = feathered_paste(
            inputs.samples_to.samples,
            inputs.samples_from.samples,
            inputs.x // 8,
            inputs.y // 8,
            inputs.feather // 8,
        )
        return LatentOut(LATENT=replace(inputs.samples_to, samples=pasted))


class LatentCompositeMasked(Node):
    """Pastes a latent into another through an optional mask."""

    class_type = "LatentCompositeMasked"
    display_name = "LatentCompositeMasked"
    category = "latent"
    description = "Blend source over destination at (x, y), weighted by the mask when one is given."

    class Inputs(NodeInputs):
        destination: Latent = Input(description="The latent pasted into.")
        source: Latent = Input(description="The latent pasted.")
        x: int = Input(0, ge=0, le=MAX_RESOLUTION, step=8, description="Left edge of the paste, in pixels.")
        y: int = Input(0, ge=0, le=MAX_RESOLUTION, step=8, description="Top edge of the paste, in pixels.")
        resize_source: bool = Input(False, description="Stretch the source to the destination's size first.")
        mask: Mask | None = Input(None, optional=True, description="Where the source shows (1) or not (0).")

    Outputs = LatentOut

    def run(self, ctx: RunContext, inputs: Inputs) -> LatentOut:
        """Mask resized bilinearly to the source; offsets in pixels, applied in latent cells."""
        mask = inputs.mask.mask if inputs.mask is not None else None
        out = masked_composite(
            inputs.destination.samples.clone(),
            inputs.source.samples,
            inputs.x,
            inputs.y,
            mask,
            8,
            inputs.resize_source,
        )
        return LatentOut(LATENT=replace(inputs.destination, samples=out))


class LatentBlend(Node):
    """Linear mix of two latents."""

    class_type = "LatentBlend"
    display_name = "Latent Blend"
    category = "_for_testing"
    description = "samples1 x factor + samples2 x (1 - factor); samples2 is resized when sizes differ."

    class Inputs(NodeInputs):
        samples1: Latent = Input(description="The first latent (weighted by blend_factor).")
        samples2: Latent = Input(description="The second latent (weighted by 1 - blend_factor).")
        blend_factor: float = Input(0.5, ge=0, le=1, step=0.01, description="The weight of samples1.")

    Outputs = LatentOut

    def run(self, ctx: RunContext, inputs: Inputs) -> LatentOut:
        """Resizes samples2 bicubically with a centre crop when the shapes differ."""
        first, second = inputs.samples1.samples, inputs.samples2.samples
        if first.shape != second.shape:
            second = common_upscale(second, first.shape[3], first.shape[2], "bicubic", "center")
        mixed = first * inputs.blend_factor + second * (1 - inputs.blend_factor)
        return LatentOut(LATENT=replace(inputs.samples1, samples=mixed))


class _TwoLatents(NodeInputs):
    samples1: Latent = Input(description="The first latent.")
    samples2: Latent = Input(description="The second latent (resized and tiled to the first).")


class LatentAdd(Node):
    """Element-wise sum of two latents."""

    class_type = "LatentAdd"
    category = "latent/advanced"
    description = "samples1 + samples2."
    Inputs = _TwoLatents
    Outputs = LatentOut

    def run(self, ctx: RunContext, inputs: _TwoLatents) -> LatentOut:
        """The second latent is matched to the first's shape and batch."""
        first = inputs.samples1.samples
        total = first + match_latent(first.shape, inputs.samples2.samples)
        return LatentOut(LATENT=replace(inputs.samples1, samples=total))


class LatentSubtract(Node):
    """Element-wise difference of two latents."""

    class_type = "LatentSubtract"
    category = "latent/advanced"
    description = "samples1 - samples2."
    Inputs = _TwoLatents
    Outputs = LatentOut

    def run(self, ctx: RunContext, inputs: _TwoLatents) -> LatentOut:
        """The second latent is matched to the first's shape and batch."""
        first = inputs.samples1.samples
        difference = first - match_latent(first.shape, inputs.samples2.samples)
        return LatentOut(LATENT=replace(inputs.samples1, samples=difference))


class LatentMultiply(Node):
    """Scales a latent."""

    class_type = "LatentMultiply"
    category = "latent/advanced"
    description = "samples x multiplier."

    class Inputs(NodeInputs):
        samples: Latent = Input(description="The latent to scale.")
        multiplier: float = Input(1.0, ge=-10.0, le=10.0, step=0.01, description="The factor.")

    Outputs = LatentOut

    def run(self, ctx: RunContext, inputs: Inputs) -> LatentOut:
        """Plain multiplication."""
        return LatentOut(LATENT=replace(inputs.samples, samples=inputs.samples.samples * inputs.multiplier))


class LatentInterpolate(Node):
    """Interpolates directions and magnitudes of two latents separately."""

    class_type = "LatentInterpolate"
    category = "latent/advanced"
    description = "Mix two latents keeping per-cell vector length: ratio 1 gives samples1."

    class Inputs(NodeInputs):
        samples1: Latent = Input(description="The latent at ratio 1.")
        samples2: Latent = Input(description="The latent at ratio 0.")
        ratio: float = Input(1.0, ge=0.0, le=1.0, step=0.01, description="The share of samples1.")

    Outputs = LatentOut

    def run(self, ctx: RunContext, inputs: Inputs) -> LatentOut:
        """See nodes.ops.latent.interpolate_latents."""
        mixed = interpolate_latents(inputs.samples1.samples, inputs.samples2.samples, inputs.ratio)
        return LatentOut(LATENT=replace(inputs.samples1, samples=mixed))


NODES = [
    LatentUpscale,
    LatentUpscaleBy,
    LatentComposite,
    LatentCompositeMasked,
    LatentBlend,
    LatentAdd,
    LatentSubtract,
    LatentMultiply,
    LatentInterpolate,
]
