"""Image transforms: scaling, batches, crop, outpaint padding, compositing, solid images, stitching."""

from __future__ import annotations

import math
from typing import Literal

import torch

from engine import Input, Node, NodeInputs, NodeOutputs, Output, RunContext
from nodes.ops.image import SpacingColor, StitchDirection, alpha_fix, pad_for_outpaint, stitch
from nodes.ops.latent import masked_composite
from nodes.ops.resize import common_upscale
from nodes.types import Image, Mask

MAX_RESOLUTION = 16384
ImageUpscaleMethod = Literal["nearest-exact", "bilinear", "area", "bicubic", "lanczos"]
METHOD_TIP = "How new pixels are computed; lanczos works on 8-bit values."


class ImageOut(NodeOutputs):
    """The single IMAGE output of most nodes here."""

    IMAGE: Image = Output(name="IMAGE", description="The resulting images.")


def scaled_image(pixels: torch.Tensor, width: int, height: int, method: str, crop: str) -> Image:
    """Resize channels-last pixels through common_upscale (which works channels first)."""
    out = common_upscale(pixels.movedim(-1, 1), width, height, method, crop)  # type: ignore[arg-type]
    return Image(pixels=out.movedim(1, -1))


class ImageScale(Node):
    """Resizes images to a pixel size."""

    class_type = "ImageScale"
    display_name = "Upscale Image"
    category = "image/upscaling"
    description = "Resize images to width x height; 0 on one side keeps the aspect ratio."

    class Inputs(NodeInputs):
        image: Image = Input(description="The images to resize.")
        upscale_method: ImageUpscaleMethod = Input("nearest-exact", description=METHOD_TIP)
        width: int = Input(512, ge=0, le=MAX_RESOLUTION, step=1, description="Target width (0: from height).")
        height: int = Input(
            512, ge=0, le=MAX_RESOLUTION, step=1, description="Target height (0: from width)."
        )
        crop: Literal["disabled", "center"] = Input(
            "disabled", description="center: trim to the new aspect first."
        )

    Outputs = ImageOut

    def run(self, ctx: RunContext, inputs: Inputs) -> ImageOut:
        """Both sides zero returns the input unchanged."""
        pixels, width, height = inputs.image.pixels, inputs.width, inputs.height
        if width == 0 and height == 0:
            return ImageOut(IMAGE=inputs.image)
        if width == 0:
            width = max(1, round(pixels.shape[2] * height / pixels.shape[1]))
        elif height == 0:
            height = max(1, round(pixels.shape[1] * width / pixels.shape[2]))
        return ImageOut(IMAGE=scaled_image(pixels, width, height, inputs.upscale_method, inputs.crop))


class ImageScaleBy(Node):
    """Resizes images by a factor."""

    class_type = "ImageScaleBy"
    display_name = "Upscale Image By"
    category = "image/upscaling"
    description = "Resize images by a factor (sides rounded to whole pixels)."

    class Inputs(NodeInputs):
        image: Image = Input(description="The images to resize.")
        upscale_method: ImageUpscaleMethod = Input("nearest-exact", description=METHOD_TIP)
        scale_by: float = Input(
            1.0, ge=0.01, le=8.0, step=0.01, description="The factor applied to both sides."
        )

    Outputs = ImageOut

    def run(self, ctx: RunContext, inputs: Inputs) -> ImageOut:
        """Sides rounded half-to-even, as Python's round."""
        pixels = inputs.image.pixels
        width = round(pixels.shape[2] * inputs.scale_by)
        height = round(pixels.shape[1] * inputs.scale_by)
        return ImageOut(IMAGE=scaled_image(pixels, width, height, inputs.upscale_method, "disabled"))


class ImageScaleToTotalPixels(Node):
    """Resizes images to about a given number of megapixels, keeping the aspect ratio."""

    class_type = "ImageScaleToTotalPixels"
    display_name = "Scale Image to Total Pixels"
    category = "image/upscaling"
    description = "Resize so width x height is close to megapixels x 1024 x 1024."

    class Inputs(NodeInputs):
        image: Image = Input(description="The images to resize.")
        upscale_method: ImageUpscaleMethod = Input("nearest-exact", description=METHOD_TIP)
        megapixels: float = Input(1.0, ge=0.01, le=16.0, step=0.01, description="Target size in 2^20 pixels.")

    Outputs = ImageOut

    def run(self, ctx: RunContext, inputs: Inputs) -> ImageOut:
        """One factor for both sides, each side rounded."""
        pixels = inputs.image.pixels
        total = int(inputs.megapixels * 1024 * 1024)
        scale = math.sqrt(total / (pixels.shape[2] * pixels.shape[1]))
        width, height = round(pixels.shape[2] * scale), round(pixels.shape[1] * scale)
        return ImageOut(IMAGE=scaled_image(pixels, width, height, inputs.upscale_method, "disabled"))


class ImageInvert(Node):
    """Inverts image colours."""

    class_type = "ImageInvert"
    display_name = "Invert Image"
    category = "image"
    description = "1 - pixel value, per channel."

    class Inputs(NodeInputs):
        image: Image = Input(description="The images to invert.")

    Outputs = ImageOut

    def run(self, ctx: RunContext, inputs: Inputs) -> ImageOut:
        """Plain complement."""
        return ImageOut(IMAGE=Image(pixels=1.0 - inputs.image.pixels))


class ImageBatch(Node):
    """Concatenates two image batches."""

    class_type = "ImageBatch"
    display_name = "Batch Images"
    category = "image"
    description = "One batch: image1's items, then image2's (resized to image1's size when needed)."

    class Inputs(NodeInputs):
        image1: Image = Input(description="The first items of the batch.")
        image2: Image = Input(description="The items appended (bilinear, centre crop to image1's size).")

    Outputs = ImageOut

    def run(self, ctx: RunContext, inputs: Inputs) -> ImageOut:
        """Concatenates along the batch axis."""
        first, second = inputs.image1.pixels, inputs.image2.pixels
        if first.shape[1:] != second.shape[1:]:
            second = scaled_image(second, first.shape[2], first.shape[1], "bilinear", "center").pixels
        return ImageOut(IMAGE=Image(pixels=torch.cat((first, second), dim=0)))


class ImageFromBatch(Node):
    """Picks a run of images out of a batch."""

    class_type = "ImageFromBatch"
    category = "image/batch"
    description = "Take `length` images starting at batch_index (clamped to the batch)."

    class Inputs(NodeInputs):
        image: Image = Input(description="The batch to pick from.")
        batch_index: int = Input(0, ge=0, le=4095, description="The first image taken (0-based).")
        length: int = Input(1, ge=1, le=4096, description="How many images to take.")

    Outputs = ImageOut

    def run(self, ctx: RunContext, inputs: Inputs) -> ImageOut:
        """A slice of the batch."""
        pixels = inputs.image.pixels
        start = min(pixels.shape[0] - 1, inputs.batch_index)
        length = min(pixels.shape[0] - start, inputs.length)
        return ImageOut(IMAGE=Image(pixels=pixels[start : start + length].clone()))


class RepeatImageBatch(Node):
    """Repeats an image batch."""

    class_type = "RepeatImageBatch"
    category = "image/batch"
    description = "The whole batch, `amount` times over."

    class Inputs(NodeInputs):
        image: Image = Input(description="The batch to repeat.")
        amount: int = Input(1, ge=1, le=4096, description="How many copies.")

    Outputs = ImageOut

    def run(self, ctx: RunContext, inputs: Inputs) -> ImageOut:
        """Copies follow each other (1,2,1,2...)."""
        return ImageOut(IMAGE=Image(pixels=inputs.image.pixels.repeat(inputs.amount, 1, 1, 1)))


class ImageCrop(Node):
    """Crops images to a rectangle."""

    class_type = "ImageCrop"
    display_name = "Image Crop"
    category = "image/transform"
    description = "Keep the width x height rectangle at (x, y)."

    class Inputs(NodeInputs):
        image: Image = Input(description="The images to crop.")
        width: int = Input(512, ge=1, le=MAX_RESOLUTION, step=1, description="Width kept.")
        height: int = Input(512, ge=1, le=MAX_RESOLUTION, step=1, description="Height kept.")
        x: int = Input(0, ge=0, le=MAX_RESOLUTION, step=1, description="Left edge.")
        y: int = Input(0, ge=0, le=MAX_RESOLUTION, step=1, description="Top edge.")

    Outputs = ImageOut

    def run(self, ctx: RunContext, inputs: Inputs) -> ImageOut:
        """The origin stays inside the image; the rectangle is cut at the far edges."""
        pixels = inputs.image.pixels
        x = min(inputs.x, pixels.shape[2] - 1)
        y = min(inputs.y, pixels.shape[1] - 1)
        return ImageOut(IMAGE=Image(pixels=pixels[:, y : y + inputs.height, x : x + inputs.width, :]))


class ImagePadForOutpaint(Node):
    """Adds borders to outpaint into, with the matching mask."""

    class_type = "ImagePadForOutpaint"
    display_name = "Pad Image for Outpainting"
    category = "image"
    description = (
        "Grow the canvas with grey borders; the mask marks them (and a soft band inside) for inpainting."
    )

    class Inputs(NodeInputs):
        image: Image = Input(description="The images to extend.")
        left: int = Input(0, ge=0, le=MAX_RESOLUTION, step=8, description="Pixels added on the left.")
        top: int = Input(0, ge=0, le=MAX_RESOLUTION, step=8, description="Pixels added on top.")
        right: int = Input(0, ge=0, le=MAX_RESOLUTION, step=8, description="Pixels added on the right.")
        bottom: int = Input(0, ge=0, le=MAX_RESOLUTION, step=8, description="Pixels added at the bottom.")
        feathering: int = Input(
            40, ge=0, le=MAX_RESOLUTION, step=1, description="Width of the soft band inside."
        )

    class Outputs(NodeOutputs):
        IMAGE: Image = Output(name="IMAGE", description="The padded images.")
        MASK: Mask = Output(name="MASK", description="1 on the new borders, fading inside the old edges.")

    def run(self, ctx: RunContext, inputs: Inputs) -> Outputs:
        """See nodes.ops.image.pad_for_outpaint."""
        pixels, mask = pad_for_outpaint(
            inputs.image.pixels, inputs.left, inputs.top, inputs.right, inputs.bottom, inputs.feathering
        )
        return self.Outputs(IMAGE=Image(pixels=pixels), MASK=Mask(mask=mask))


class ImageCompositeMasked(Node):
    """Pastes one image into another through an optional mask."""

    class_type = "ImageCompositeMasked"
    category = "image"
    description = "Blend source over destination at (x, y), weighted by the mask when one is given."

    class Inputs(NodeInputs):
        destination: Image = Input(description="The images pasted into.")
        source: Image = Input(description="The images pasted.")
        x: int = Input(0, ge=0, le=MAX_RESOLUTION, step=1, description="Left edge of the paste.")
        y: int = Input(0, ge=0, le=MAX_RESOLUTION, step=1, description="Top edge of the paste.")
        resize_source: bool = Input(False, description="Stretch the source to the destination's size first.")
        mask: Mask | None = Input(None, optional=True, description="Where the source shows (1) or not (0).")

    Outputs = ImageOut

    def run(self, ctx: RunContext, inputs: Inputs) -> ImageOut:
        """Channel counts are reconciled first (alpha dropped or made opaque)."""
        destination, source = alpha_fix(inputs.destination.pixels, inputs.source.pixels)
        mask = inputs.mask.mask if inputs.mask is not None else None
        out = masked_composite(
            destination.clone().movedim(-1, 1),
            source.movedim(-1, 1),
            inputs.x,
            inputs.y,
            mask,
            1,
            inputs.resize_source,
        )
        return ImageOut(IMAGE=Image(pixels=out.movedim(1, -1)))


class EmptyImage(Node):
    """A batch of single-colour images."""

    class_type = "EmptyImage"
    category = "image"
    description = "Images filled with one 0xRRGGBB colour."

    class Inputs(NodeInputs):
        width: int = Input(512, ge=1, le=MAX_RESOLUTION, step=1, description="Image width.")
        height: int = Input(512, ge=1, le=MAX_RESOLUTION, step=1, description="Image height.")
        batch_size: int = Input(1, ge=1, le=4096, description="How many images.")
        color: int = Input(0, ge=0, le=0xFFFFFF, step=1, display="color", description="The fill as 0xRRGGBB.")

    Outputs = ImageOut

    def run(self, ctx: RunContext, inputs: Inputs) -> ImageOut:
        """Each channel is its 8-bit value / 255."""
        shape = (inputs.batch_size, inputs.height, inputs.width, 1)
        channels = [torch.full(shape, ((inputs.color >> shift) & 0xFF) / 0xFF) for shift in (16, 8, 0)]
        return ImageOut(IMAGE=Image(pixels=torch.cat(channels, dim=-1)))


class ImageStitch(Node):
    """Places a second image beside the first."""

    class_type = "ImageStitch"
    display_name = "Image Stitch"
    category = "image/transform"
    description = "Join image2 to image1 on the chosen side, optionally matched in size and with a spacer."

    class Inputs(NodeInputs):
        image1: Image = Input(description="The base images.")
        direction: StitchDirection = Input("right", description="The side of image1 where image2 goes.")
        match_image_size: bool = Input(True, description="Resize image2 to image1's height (or width).")
        spacing_width: int = Input(
            0, ge=0, le=1024, step=2, description="Width of a spacer strip (made even)."
        )
        spacing_color: SpacingColor = Input("white", description="The spacer's colour.")
        image2: Image | None = Input(
            None, optional=True, description="The images joined; none returns image1."
        )

    Outputs = ImageOut

    def run(self, ctx: RunContext, inputs: Inputs) -> ImageOut:
        """See nodes.ops.image.stitch."""
        if inputs.image2 is None:
            return ImageOut(IMAGE=inputs.image1)
        out = stitch(
            inputs.image1.pixels,
            inputs.image2.pixels,
            inputs.direction,
            inputs.match_image_size,
            inputs.spacing_width,
            inputs.spacing_color,
        )
        return ImageOut(IMAGE=Image(pixels=out))


NODES = [
    ImageScale,
    ImageScaleBy,
    ImageScaleToTotalPixels,
    ImageInvert,
    ImageBatch,
    ImageFromBatch,
    RepeatImageBatch,
    ImageCrop,
    ImagePadForOutpaint,
    ImageCompositeMasked,
    EmptyImage,
    ImageStitch,
]
