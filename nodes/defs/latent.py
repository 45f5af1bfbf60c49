"""Latent nodes: EmptyLatentImage."""

from __future__ import annotations

import torch

from engine import Input, Node, NodeInputs, NodeOutputs, Output, RunContext
from nodes.types import Latent


class EmptyLatentImage(Node):
    """A batch of all-zero latents (raw VAE space) for text-to-image."""

    class_type = "EmptyLatentImage"
    display_name = "Empty Latent Image"
    category = "latent"
    description = "Starts text-to-image: an all-zero latent of the given size for a sampler to fill with noise and denoise."

    class Inputs(NodeInputs):
        width: int = Input(
            512, description="Image width in pixels; the latent is 8 times smaller.", ge=16, le=16384, step=8
        )
        height: int = Input(
            512, description="Image height in pixels; the latent is 8 times smaller.", ge=16, le=16384, step=8
        )
        batch_size: int = Input(1, description="How many images to make at once.", ge=1, le=4096)

    class Outputs(NodeOutputs):
        LATENT: Latent = Output(name="LATENT", description="Zeros shaped for the requested size and batch.")

    def run(self, ctx: RunContext, inputs: Inputs) -> Outputs:
        """Zeros [B, 4, H/8, W/8] float32."""
        shape = (inputs.batch_size, 4, inputs.height // 8, inputs.width // 8)
        return self.Outputs(LATENT=Latent(samples=torch.zeros(shape, dtype=torch.float32)))


NODES = [EmptyLatentImage]
