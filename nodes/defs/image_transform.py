"""Image geometry and helpers: flip, rotate, fit-and-pad, longest-side scaling, size readout, alpha joining,
mask preview."""

from __future__ import annotations

import random
import string
from typing import Literal

import torch

from engine import Input, Node, NodeInputs, NodeOutputs, Output, RunContext
from nodes.defs.image import save_png_batch
from nodes.defs.image_ops import MAX_RESOLUTION, METHOD_TIP, ImageOut, scaled_image
from nodes.media.save_paths import HIDDEN_METADATA
from nodes.ops.mask import as_batch
from nodes.ops.resize import common_upscale
from nodes.types import Image, Mask


class ImageFlip(Node):
    """Mirrors images."""

    class_type = "ImageFlip"
    category = "image/transform"

    class Inputs(NodeInputs):
        image: Image = Input(description="The images to mirror.")
        flip_method: Literal["x-axis: vertically", "y-axis: horizontally"] = Input(
            "x-axis: vertically", description="The mirror axis."
        )

    Outputs = ImageOut

    def run(self, ctx: RunContext, inputs: Inputs) -> ImageOut:
        """x-axis flips rows, y-axis flips columns."""
        dim = 1 if inputs.flip_method.startswith("x") else 2
        return ImageOut(IMAGE=Image(pixels=torch.flip(inputs.image.pixels, dims=[dim])))


class ImageRotate(Node):
    """Rotates images by quarter turns."""

    class_type = "ImageRotate"
    category = "image/transform"

    class Inputs(NodeInputs):
        image: Image = Input(description="The images to rotate.")
        rotation: Literal["none", "90 degrees", "180 degrees", "270 degrees"] = Input(
            "none", description="The clockwise rotation."
        )

    Outputs = ImageOut

    def run(self, ctx: RunContext, inputs: Inputs) -> ImageOut:
        """Quarter turns from width towards height (clockwise on screen)."""
        turns = {"none": 0, "90 degrees": 1, "180 degrees": 2, "270 degrees": 3}[inputs.rotation]
        return ImageOut(IMAGE=Image(pixels=torch.rot90(inputs.image.pixels, k=turns, dims=[2, 1])))


class ResizeAndPadImage(Node):
    """Fits images inside a size and pads the rest."""

    class_type = "ResizeAndPadImage"
    category = "image/transform"

    class Inputs(NodeInputs):
        image: Image = Input(description="The images to fit.")
        target_width: int = Input(512, ge=1, le=MAX_RESOLUTION, step=1, description="Output width.")
        target_height: int = Input(512, ge=1, le=MAX_RESOLUTION, step=1, description="Output height.")
        padding_color: Literal["white", "black"] = Input("white", description="The colour of the borders.")
        interpolation: Literal["area", "bicubic", "nearest-exact", "bilinear", "lanczos"] = Input(
            "area", description="How the images are resized."
        )

    Outputs = ImageOut

    def run(self, ctx: RunContext, inputs: Inputs) -> ImageOut:
        """Scale to fit (sides truncated to whole pixels), centred on a solid canvas."""
        pixels = inputs.image.pixels
        batch, height, width, channels = pixels.shape
        scale = min(inputs.target_width / width, inputs.target_height / height)
        new_w, new_h = int(width * scale), int(height * scale)
        resized = common_upscale(pixels.permute(0, 3, 1, 2), new_w, new_h, inputs.interpolation, "disabled")
        fill = 0.0 if inputs.padding_color == "black" else 1.0
        canvas = torch.full(
            (batch, channels, inputs.target_height, inputs.target_width), fill, dtype=pixels.dtype
        )
        top, left = (inputs.target_height - new_h) // 2, (inputs.target_width - new_w) // 2
        canvas[:, :, top : top + new_h, left : left + new_w] = resized
        return ImageOut(IMAGE=Image(pixels=canvas.permute(0, 2, 3, 1)))


def max_dimension_size(height: int, width: int, largest: int) -> tuple[int, int]:
    """(height, width) with the longer side set to `largest` and the other scaled to keep the aspect (rounded)."""
    if height > width:
        return largest, round(width / height * largest)
    if width > height:
        return round(height / width * largest), largest
    return largest, largest


class ImageScaleToMaxDimension(Node):
    """Resizes images so their longer side has a given length."""

    class_type = "ImageScaleToMaxDimension"
    display_name = "ImageScaleToMaxDimension"
    category = "image/upscaling"
    description = "Scale so the longest side equals largest_size; the other side follows the aspect ratio."

    class Inputs(NodeInputs):
        image: Image = Input(description="The images to resize.")
        upscale_method: Literal["area", "lanczos", "bilinear", "nearest-exact", "bicubic"] = Input(
            description=METHOD_TIP
        )
        largest_size: int = Input(
            512,
            ge=0,
            le=MAX_RESOLUTION,
            step=1,
            description="Length in pixels of the longer side afterwards.",
        )

    Outputs = ImageOut

    def run(self, ctx: RunContext, inputs: Inputs) -> ImageOut:
        """Both sides from the longer one, no cropping."""
        pixels = inputs.image.pixels
        height, width = max_dimension_size(pixels.shape[1], pixels.shape[2], inputs.largest_size)
        return ImageOut(IMAGE=scaled_image(pixels, width, height, inputs.upscale_method, "disabled"))


class GetImageSize(Node):
    """Reads the size of an image batch."""

    class_type = "GetImageSize"
    display_name = "Get Image Size"
    category = "image"
    description = "Width, height and batch size of the images."

    class Inputs(NodeInputs):
        image: Image = Input(description="The images to measure.")

    class Outputs(NodeOutputs):
        width: int = Output(name="width", description="Pixels across.")
        height: int = Output(name="height", description="Pixels down.")
        batch_size: int = Output(name="batch_size", description="Number of images.")

    def run(self, ctx: RunContext, inputs: Inputs) -> Outputs:
        """Shape readout."""
        batch, height, width = inputs.image.pixels.shape[:3]
        return self.Outputs(width=width, height=height, batch_size=batch)


class JoinImageWithAlpha(Node):
    """Adds a mask as alpha channel."""

    class_type = "JoinImageWithAlpha"
    display_name = "Join Image with Alpha"
    category = "mask/compositing"

    class Inputs(NodeInputs):
        image: Image = Input(description="The colour images.")
        alpha: Mask = Input(description="The mask (1 = transparent), resized to the images.")

    Outputs = ImageOut

    def run(self, ctx: RunContext, inputs: Inputs) -> ImageOut:
        """RGBA with alpha = 1 - mask; the batch is the shorter of the two."""
        pixels = inputs.image.pixels
        mask = as_batch(inputs.alpha.mask).unsqueeze(1)
        alpha = 1.0 - torch.nn.functional.interpolate(mask, size=pixels.shape[1:3], mode="bilinear").squeeze(
            1
        )
        count = min(len(pixels), len(alpha))
        joined = [torch.cat((pixels[i][:, :, :3], alpha[i].unsqueeze(2)), dim=2) for i in range(count)]
        return ImageOut(IMAGE=Image(pixels=torch.stack(joined)))


class MaskPreview(Node):
    """Shows a mask in the client."""

    class_type = "MaskPreview"
    category = "mask"
    description = "Shows the mask as a grey image (temporary file)."
    output_node = True
    hidden = HIDDEN_METADATA

    class Inputs(NodeInputs):
        mask: Mask = Input(description="The mask to show.")

    class Outputs(NodeOutputs):
        pass

    def run(self, ctx: RunContext, inputs: Inputs) -> Outputs:
        """Grey PNGs in temp/ with a random suffix, as PreviewImage."""
        pixels = as_batch(inputs.mask.mask).unsqueeze(-1).expand(-1, -1, -1, 3)
        suffix = "".join(random.choice(string.ascii_lowercase) for _ in range(5))
        images = save_png_batch(ctx, pixels, ctx.temp_dir, f"ComfyUI_temp_{suffix}", "temp", 4)
        ctx.set_ui({"images": images})
        return self.Outputs()


NODES = [
    ImageFlip,
    ImageRotate,
    ResizeAndPadImage,
    ImageScaleToMaxDimension,
    GetImageSize,
    JoinImageWithAlpha,
    MaskPreview,
]
