"""MASK nodes: conversions to and from images, solid masks, crop, composite, feather, grow, threshold, loading."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image as PILImage
from PIL import ImageOps

from engine import Input, Node, NodeInputError, NodeInputs, NodeOutputs, Output, RunContext
from nodes.defs.image import LoadImage, resolve_annotated
from nodes.ops.mask import MaskOperation, as_batch, color_to_mask, composite, feather, grow
from nodes.types import Image, Mask

MAX_RESOLUTION = 16384


class MaskOut(NodeOutputs):
    """The single MASK output of most nodes here."""

    MASK: Mask = Output(name="MASK", description="The resulting mask.")


class ImageToMask(Node):
    """One image channel as a mask."""

    class_type = "ImageToMask"
    display_name = "Convert Image to Mask"
    category = "mask"
    description = "Take one channel of the images as a mask."

    class Inputs(NodeInputs):
        image: Image = Input(description="The images to read.")
        channel: Literal["red", "green", "blue", "alpha"] = Input("red", description="The channel used.")

    Outputs = MaskOut

    def run(self, ctx: RunContext, inputs: Inputs) -> MaskOut:
        """alpha needs a four-channel image."""
        index = ("red", "green", "blue", "alpha").index(inputs.channel)
        pixels = inputs.image.pixels
        if index >= pixels.shape[-1]:
            raise NodeInputError(
                "channel", f"the images have {pixels.shape[-1]} channels, no {inputs.channel}"
            )
        return MaskOut(MASK=Mask(mask=pixels[:, :, :, index]))


class MaskToImage(Node):
    """A mask as a grey image."""

    class_type = "MaskToImage"
    display_name = "Convert Mask to Image"
    category = "mask"
    description = "Show a mask as grey images (the value in all three channels)."

    class Inputs(NodeInputs):
        mask: Mask = Input(description="The mask to convert.")

    class Outputs(NodeOutputs):
        IMAGE: Image = Output(name="IMAGE", description="Grey images.")

    def run(self, ctx: RunContext, inputs: Inputs) -> Outputs:
        """[B, H, W] -> [B, H, W, 3]."""
        pixels = as_batch(inputs.mask.mask).unsqueeze(-1).expand(-1, -1, -1, 3)
        return self.Outputs(IMAGE=Image(pixels=pixels))


class ImageColorToMask(Node):
    """Masks the pixels of one exact colour."""

    class_type = "ImageColorToMask"
    category = "mask"
    description = "1 where the image has exactly this 0xRRGGBB colour (8-bit), else 0."

    class Inputs(NodeInputs):
        image: Image = Input(description="The images to key.")
        color: int = Input(0, ge=0, le=0xFFFFFF, step=1, display="color", description="The key colour.")

    Outputs = MaskOut

    def run(self, ctx: RunContext, inputs: Inputs) -> MaskOut:
        """Pixels are rounded to 8 bits first."""
        return MaskOut(MASK=Mask(mask=color_to_mask(inputs.image.pixels, inputs.color)))


class SolidMask(Node):
    """A mask of one value."""

    class_type = "SolidMask"
    category = "mask"
    description = "A width x height mask filled with one value."

    class Inputs(NodeInputs):
        value: float = Input(1.0, ge=0.0, le=1.0, step=0.01, description="The fill value.")
        width: int = Input(512, ge=1, le=MAX_RESOLUTION, step=1, description="Mask width.")
        height: int = Input(512, ge=1, le=MAX_RESOLUTION, step=1, description="Mask height.")

    Outputs = MaskOut

    def run(self, ctx: RunContext, inputs: Inputs) -> MaskOut:
        """Batch of one."""
        mask = torch.full((1, inputs.height, inputs.width), inputs.value, dtype=torch.float32)
        return MaskOut(MASK=Mask(mask=mask))


class InvertMask(Node):
    """Inverts a mask."""

    class_type = "InvertMask"
    category = "mask"
    description = "1 - mask."

    class Inputs(NodeInputs):
        mask: Mask = Input(description="The mask to invert.")

    Outputs = MaskOut

    def run(self, ctx: RunContext, inputs: Inputs) -> MaskOut:
        """Plain complement."""
        return MaskOut(MASK=Mask(mask=1.0 - inputs.mask.mask))


class CropMask(Node):
    """Crops a mask to a rectangle."""

    class_type = "CropMask"
    category = "mask"
    description = "Keep the width x height rectangle at (x, y)."

    class Inputs(NodeInputs):
        mask: Mask = Input(description="The mask to crop.")
        x: int = Input(0, ge=0, le=MAX_RESOLUTION, step=1, description="Left edge.")
        y: int = Input(0, ge=0, le=MAX_RESOLUTION, step=1, description="Top edge.")
        width: int = Input(512, ge=1, le=MAX_RESOLUTION, step=1, description="Width kept.")
        height: int = Input(512, ge=1, le=MAX_RESOLUTION, step=1, description="Height kept.")

    Outputs = MaskOut

    def run(self, ctx: RunContext, inputs: Inputs) -> MaskOut:
        """Cut at the mask's edges."""
        mask = as_batch(inputs.mask.mask)
        return MaskOut(
            MASK=Mask(mask=mask[:, inputs.y : inputs.y + inputs.height, inputs.x : inputs.x + inputs.width])
        )


class MaskComposite(Node):
    """Combines two masks at an offset."""

    class_type = "MaskComposite"
    category = "mask"
    description = "Combine source into destination at (x, y) with an arithmetic or logic operation."

    class Inputs(NodeInputs):
        destination: Mask = Input(description="The mask combined into.")
        source: Mask = Input(description="The mask combined.")
        x: int = Input(0, ge=0, le=MAX_RESOLUTION, step=1, description="Left edge of the source.")
        y: int = Input(0, ge=0, le=MAX_RESOLUTION, step=1, description="Top edge of the source.")
        operation: MaskOperation = Input("multiply", description="How overlapping values combine.")

    Outputs = MaskOut

    def run(self, ctx: RunContext, inputs: Inputs) -> MaskOut:
        """Clamped to 0..1."""
        out = composite(inputs.destination.mask, inputs.source.mask, inputs.x, inputs.y, inputs.operation)
        return MaskOut(MASK=Mask(mask=out))


class FeatherMask(Node):
    """Fades a mask towards its edges."""

    class_type = "FeatherMask"
    category = "mask"
    description = "Ramp the mask down linearly towards each edge over the given widths."

    class Inputs(NodeInputs):
        mask: Mask = Input(description="The mask to fade.")
        left: int = Input(0, ge=0, le=MAX_RESOLUTION, step=1, description="Ramp width on the left.")
        top: int = Input(0, ge=0, le=MAX_RESOLUTION, step=1, description="Ramp height on top.")
        right: int = Input(0, ge=0, le=MAX_RESOLUTION, step=1, description="Ramp width on the right.")
        bottom: int = Input(0, ge=0, le=MAX_RESOLUTION, step=1, description="Ramp height at the bottom.")

    Outputs = MaskOut

    def run(self, ctx: RunContext, inputs: Inputs) -> MaskOut:
        """See nodes.ops.mask.feather."""
        out = feather(inputs.mask.mask, inputs.left, inputs.top, inputs.right, inputs.bottom)
        return MaskOut(MASK=Mask(mask=out))


class GrowMask(Node):
    """Grows or shrinks a mask."""

    class_type = "GrowMask"
    category = "mask"
    description = "Expand (positive) or shrink (negative) the mask by whole pixels."

    class Inputs(NodeInputs):
        mask: Mask = Input(description="The mask to grow.")
        expand: int = Input(
            0, ge=-MAX_RESOLUTION, le=MAX_RESOLUTION, step=1, description="Pixels to grow by."
        )
        tapered_corners: bool = Input(True, description="Grow with a cross (rounder) instead of a square.")

    Outputs = MaskOut

    def run(self, ctx: RunContext, inputs: Inputs) -> MaskOut:
        """Greyscale dilation or erosion, one pixel per step."""
        return MaskOut(MASK=Mask(mask=grow(inputs.mask.mask, inputs.expand, inputs.tapered_corners)))


class ThresholdMask(Node):
    """Binarises a mask."""

    class_type = "ThresholdMask"
    category = "mask"
    description = "1 where the mask is above the value, else 0."

    class Inputs(NodeInputs):
        mask: Mask = Input(description="The mask to binarise.")
        value: float = Input(0.5, ge=0.0, le=1.0, step=0.01, description="The threshold (exclusive).")

    Outputs = MaskOut

    def run(self, ctx: RunContext, inputs: Inputs) -> MaskOut:
        """Strictly greater than the value."""
        return MaskOut(MASK=Mask(mask=(inputs.mask.mask > inputs.value).float()))


def load_mask_file(path: Path, channel: str) -> torch.Tensor:
    """One channel of an image file as MASK [1, H, W]; alpha is inverted (1 = transparent = masked).

    A file without the requested channel gives a 64 x 64 zero mask, as ComfyUI does.
    """
    with PILImage.open(path) as opened:
        image = ImageOps.exif_transpose(opened)
        if image.getbands() != ("R", "G", "B", "A"):
            if image.mode == "I":
                image = image.point(lambda v: v * (1 / 255))
            image = image.convert("RGBA")
        band = channel[0].upper()
        if band not in image.getbands():
            return torch.zeros((1, 64, 64), dtype=torch.float32)
        mask = torch.from_numpy(np.array(image.getchannel(band)).astype(np.float32) / 255.0)
    if band == "A":
        mask = 1.0 - mask
    return mask.unsqueeze(0)


class LoadImageMask(Node):
    """Loads one channel of an image file as a mask."""

    class_type = "LoadImageMask"
    display_name = "Load Image (as Mask)"
    category = "mask"
    description = "Load a channel of an image from the input folder as a mask."
    self_validated_inputs = frozenset({"image"})

    class Inputs(NodeInputs):
        image: str = Input(
            description="An image file in the input folder.", combo_source="input_images", image_upload=True
        )
        channel: Literal["alpha", "red", "green", "blue"] = Input(
            "alpha", description="The channel used as mask."
        )

    Outputs = MaskOut

    @classmethod
    def fingerprint(cls, values: Mapping[str, Any], env: Any) -> str:
        """The file's sha256, so editing the file in place re-runs the node (as LoadImage)."""
        return LoadImage.fingerprint(values, env)

    @classmethod
    def validate_inputs(cls, values: Mapping[str, Any], env: Any) -> str | None:
        """Refuse names that are missing or escape the input folder (as LoadImage)."""
        return LoadImage.validate_inputs(values, env)

    def run(self, ctx: RunContext, inputs: Inputs) -> MaskOut:
        """Decode the file and keep one channel."""
        dirs = {"input": ctx.input_dir, "output": ctx.output_dir, "temp": ctx.temp_dir}
        return MaskOut(MASK=Mask(mask=load_mask_file(resolve_annotated(inputs.image, dirs), inputs.channel)))


NODES = [
    LoadImageMask,
    ImageToMask,
    MaskToImage,
    ImageColorToMask,
    SolidMask,
    InvertMask,
    CropMask,
    MaskComposite,
    FeatherMask,
    GrowMask,
    ThresholdMask,
]
