"""VAE nodes: VAEDecode, VAEEncode, VAEDecodeTiled."""

from __future__ import annotations

from engine import Input, Node, NodeInputs, NodeOutputs, Output, RunContext
from nodes.diffusion import vae as vae_ops
from nodes.diffusion.model_handle import VaeHandle
from nodes.types import Image, Latent


class VAEDecode(Node):
    """Latents -> image (in tiles only when the device lacks the memory to decode it whole)."""

    class_type = "VAEDecode"
    display_name = "VAE Decode"
    category = "latent"
    description = "Turns latents into pixels with the VAE's decoder."

    class Inputs(NodeInputs):
        samples: Latent = Input(description="Latents from a sampler (or any latent source).")
        vae: VaeHandle = Input(description="Its decoder must match the model family the latents came from.")

    class Outputs(NodeOutputs):
        IMAGE: Image = Output(name="IMAGE", description="Pixels, one image per latent of the batch.")

    def run(self, ctx: RunContext, inputs: Inputs) -> Outputs:
        """Decode the raw latents."""
        return self.Outputs(
            IMAGE=Image(pixels=vae_ops.decode(inputs.vae.autoencoder(ctx.models), inputs.samples.samples))
        )


class VAEEncode(Node):
    """Image -> latents (raw VAE space)."""

    class_type = "VAEEncode"
    display_name = "VAE Encode"
    category = "latent"
    description = "Encodes an image into the VAE's latent space."

    class Inputs(NodeInputs):
        pixels: Image = Input(description="Pixels to turn into latents (for image-to-image).")
        vae: VaeHandle = Input(
            description="Its encoder must match the model family that will sample the latents."
        )

    class Outputs(NodeOutputs):
        LATENT: Latent = Output(name="LATENT", description="The encoded latent.")

    def run(self, ctx: RunContext, inputs: Inputs) -> Outputs:
        """Encode pixels (cropped to multiples of 8)."""
        return self.Outputs(
            LATENT=Latent(samples=vae_ops.encode(inputs.vae.autoencoder(ctx.models), inputs.pixels.pixels))
        )


class VAEDecodeTiled(Node):
    """Latents -> image, decoded in overlapping tiles to bound memory."""

    class_type = "VAEDecodeTiled"
    display_name = "VAE Decode (Tiled)"
    category = "_for_testing"
    description = "Decodes latents in tiles; uses less memory than VAEDecode."

    class Inputs(NodeInputs):
        samples: Latent = Input(description="Latents from a sampler (or any latent source).")
        vae: VaeHandle = Input(description="Its decoder must match the model family the latents came from.")
        tile_size: int = Input(512, description="Tile size in pixels.", ge=64, le=4096, step=32)
        overlap: int = Input(64, description="Tile overlap in pixels.", ge=0, le=4096, step=32)
        temporal_size: int = Input(
            64,
            description="Frames per temporal tile of a video VAE; image VAEs (all this node loads) ignore it.",
            ge=8,
            le=4096,
            step=4,
        )
        temporal_overlap: int = Input(
            8,
            description="Frames shared by temporal tiles of a video VAE; image VAEs ignore it.",
            ge=4,
            le=4096,
            step=4,
        )

    class Outputs(NodeOutputs):
        IMAGE: Image = Output(name="IMAGE", description="Pixels, one image per latent of the batch.")

    def run(self, ctx: RunContext, inputs: Inputs) -> Outputs:
        """Decode in tiles; the overlap is capped at a quarter tile as ComfyUI does."""
        overlap = inputs.overlap if inputs.tile_size >= inputs.overlap * 4 else inputs.tile_size // 4
        decoded = vae_ops.decode_tiled(
            inputs.vae.autoencoder(ctx.models), inputs.samples.samples, inputs.tile_size // 8, overlap // 8
        )
        return self.Outputs(IMAGE=Image(pixels=vae_ops.to_image(decoded)))


NODES = [VAEDecode, VAEEncode, VAEDecodeTiled]
