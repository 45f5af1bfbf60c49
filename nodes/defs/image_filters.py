"""Image filters: blend modes, Gaussian blur, sharpening and palette quantisation."""

from __future__ import annotations

from engine import Input, Node, NodeInputs, RunContext
from nodes.defs.image_ops import ImageOut
from nodes.ops.image import BlendMode, DitherMode, blend_images, blur, quantize, sharpen
from nodes.types import Image


class ImageBlend(Node):
    """Blends two images with a photo-editor blend mode."""

    class_type = "ImageBlend"
    display_name = "Image Blend"
    category = "image/postprocessing"
    description = "Mix image2 over image1 with a blend mode, by blend_factor."

    class Inputs(NodeInputs):
        image1: Image = Input(description="The base images.")
        image2: Image = Input(description="The images blended on top (resized when sizes differ).")
        blend_factor: float = Input(
            0.5, ge=0.0, le=1.0, step=0.01, description="How much of the blend shows."
        )
        blend_mode: BlendMode = Input("normal", description="The formula combining the two.")

    Outputs = ImageOut

    def run(self, ctx: RunContext, inputs: Inputs) -> ImageOut:
        """Clamped to 0..1."""
        out = blend_images(inputs.image1.pixels, inputs.image2.pixels, inputs.blend_factor, inputs.blend_mode)
        return ImageOut(IMAGE=Image(pixels=out))


class ImageBlur(Node):
    """Gaussian blur."""

    class_type = "ImageBlur"
    display_name = "Image Blur"
    category = "image/postprocessing"
    description = "Blur with a Gaussian kernel of the given radius and spread."

    class Inputs(NodeInputs):
        image: Image = Input(description="The images to blur.")
        blur_radius: int = Input(1, ge=1, le=31, step=1, description="Kernel radius in pixels.")
        sigma: float = Input(1.0, ge=0.1, le=10.0, step=0.1, description="Spread relative to the radius.")

    Outputs = ImageOut

    def run(self, ctx: RunContext, inputs: Inputs) -> ImageOut:
        """Reflected borders."""
        return ImageOut(IMAGE=Image(pixels=blur(inputs.image.pixels, inputs.blur_radius, inputs.sigma)))


class ImageSharpen(Node):
    """Sharpening filter."""

    class_type = "ImageSharpen"
    display_name = "Image Sharpen"
    category = "image/postprocessing"
    description = "Sharpen by subtracting a Gaussian surround."

    class Inputs(NodeInputs):
        image: Image = Input(description="The images to sharpen.")
        sharpen_radius: int = Input(1, ge=1, le=31, step=1, description="Kernel radius in pixels.")
        sigma: float = Input(1.0, ge=0.1, le=10.0, step=0.01, description="Spread relative to the radius.")
        alpha: float = Input(1.0, ge=0.0, le=5.0, step=0.01, description="Strength.")

    Outputs = ImageOut

    def run(self, ctx: RunContext, inputs: Inputs) -> ImageOut:
        """Clamped to 0..1."""
        out = sharpen(inputs.image.pixels, inputs.sharpen_radius, inputs.sigma, inputs.alpha)
        return ImageOut(IMAGE=Image(pixels=out))


class ImageQuantize(Node):
    """Palette reduction."""

    class_type = "ImageQuantize"
    display_name = "Image Quantize"
    category = "image/postprocessing"
    description = "Reduce each image to a palette of at most `colors` colours."

    class Inputs(NodeInputs):
        image: Image = Input(description="The images to reduce.")
        colors: int = Input(256, ge=1, le=256, step=1, description="Palette size.")
        dither: DitherMode = Input("none", description="How in-between colours are approximated.")

    Outputs = ImageOut

    def run(self, ctx: RunContext, inputs: Inputs) -> ImageOut:
        """Per image, PIL's median-cut palette."""
        return ImageOut(IMAGE=Image(pixels=quantize(inputs.image.pixels, inputs.colors, inputs.dither)))


NODES = [ImageBlend, ImageBlur, ImageSharpen, ImageQuantize]
