"""Upscale-model nodes: UpscaleModelLoader and ImageUpscaleWithModel (spandrel architectures, tiled)."""

from __future__ import annotations

from pathlib import Path

from engine import Input, Node, NodeInputs, NodeOutputs, Output, RunContext
from nodes.diffusion.upscale import UpscaleNet, load_upscale_model, upscale_pixels
from nodes.types import Image, UpscaleModel


def upscale_net(ctx: RunContext, model: UpscaleModel) -> UpscaleNet:
    """The network for a handle, loaded through the model store (reloaded if it was evicted)."""
    net = ctx.models.get(model.store_key, lambda: load_upscale_model(Path(model.path)))
    assert isinstance(net, UpscaleNet)
    return net


class UpscaleModelLoader(Node):
    """Loads an image upscale model (ESRGAN, RealESRGAN, SwinIR, HAT, DAT, ...) from models/upscale_models."""

    class_type = "UpscaleModelLoader"
    display_name = "Load Upscale Model"
    category = "loaders"
    description = (
        "Reads a super-resolution model file; its architecture and scale are recognised from the weights. "
        "Pickle files (.pth, .pt) are read only when pickle loading is enabled."
    )

    class Inputs(NodeInputs):
        model_name: str = Input(
            description="A file from models/upscale_models.", combo_source="upscale_models"
        )

    class Outputs(NodeOutputs):
        UPSCALE_MODEL: UpscaleModel = Output(
            name="UPSCALE_MODEL", description="The upscale network, for Upscale Image (using Model)."
        )

    def run(self, ctx: RunContext, inputs: Inputs) -> Outputs:
        """Build the network once (the store keeps it) and hand out a handle naming it."""
        path = str(Path(ctx.model_paths.resolve("upscale_models", inputs.model_name)))
        probe = UpscaleModel(path=path, architecture="", scale=1)
        net = upscale_net(ctx, probe)
        descriptor = net.descriptor
        handle = UpscaleModel(path=path, architecture=descriptor.architecture.name, scale=descriptor.scale)
        return self.Outputs(UPSCALE_MODEL=handle)


class ImageUpscaleWithModel(Node):
    """Enlarges images with an upscale model, tile by tile."""

    class_type = "ImageUpscaleWithModel"
    display_name = "Upscale Image (using Model)"
    category = "image/upscaling"
    description = (
        "Runs the upscale model over 512-pixel tiles that overlap by 32 and blends the seams; on "
        "out-of-memory it retries with smaller tiles."
    )

    class Inputs(NodeInputs):
        upscale_model: UpscaleModel = Input(description="The model from Load Upscale Model.")
        image: Image = Input(description="The images to enlarge.")

    class Outputs(NodeOutputs):
        IMAGE: Image = Output(
            name="IMAGE", description="The enlarged images (sides times the model's scale)."
        )

    def run(self, ctx: RunContext, inputs: Inputs) -> Outputs:
        """Tile, run, blend; progress is reported per tile."""
        net = upscale_net(ctx, inputs.upscale_model)
        pixels = upscale_pixels(net, inputs.image.pixels, ctx.models.device, ctx.progress)
        return self.Outputs(IMAGE=Image(pixels=pixels))


NODES = [UpscaleModelLoader, ImageUpscaleWithModel]
