"""InstructPixToPixConditioning: an image latent handed to models that read it beside the noisy latent.

Facts followed (ComfyUI's node, reimplemented): the picture is cropped around its centre to multiples
of 8 and encoded; the encoding rides on every entry of both conditionings as the model's extra input
(instruct-pix2pix UNets take it as 4 more channels, FLUX.1 Canny/Depth dev as 16 more, see
nodes.sampling.conds), and the latent handed out is all zeros of the encoding's shape.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from engine import Input, Node, NodeInputs, NodeOutputs, Output, RunContext
from nodes.diffusion import vae as vae_ops
from nodes.diffusion.model_handle import VaeHandle
from nodes.types import Conditioning, Image, Latent


def with_concat_latent(cond: Conditioning, concat_latent: torch.Tensor) -> Conditioning:
    """Every entry of `cond` carrying `concat_latent` (raw VAE space) as the model's image input."""
    return Conditioning(entries=tuple(replace(e, concat_latent=concat_latent) for e in cond.entries))


class InstructPixToPixConditioning(Node):
    """Attaches an encoded picture to both conditionings for image-guided models (ip2p, FLUX Canny/Depth)."""

    class_type = "InstructPixToPixConditioning"
    category = "conditioning/instructpix2pix"
    description = (
        "Encodes a picture and gives it to both conditionings as the model's image input: the edit "
        "source for instruct-pix2pix models, the edge or depth map for FLUX.1 Canny/Depth models and "
        "their control LoRAs. Also returns an empty latent of the picture's size to sample from."
    )

    class Inputs(NodeInputs):
        positive: Conditioning = Input(description="The positive conditioning to carry the picture.")
        negative: Conditioning = Input(description="The negative conditioning to carry the picture.")
        vae: VaeHandle = Input(description="The VAE that encodes the picture (the sampling model's).")
        pixels: Image = Input(
            description="The picture the model follows; its sides are cropped to multiples of 8."
        )

    class Outputs(NodeOutputs):
        positive: Conditioning = Output(name="positive", description="Positive with the encoded picture.")
        negative: Conditioning = Output(name="negative", description="Negative with the encoded picture.")
        latent: Latent = Output(name="latent", description="An all-zero latent of the picture's size.")

    def run(self, ctx: RunContext, inputs: Inputs) -> Outputs:
        """Encode once, attach to both sides, hand out zeros of the same shape."""
        concat_latent = vae_ops.encode(inputs.vae.autoencoder(ctx.models), inputs.pixels.pixels)
        return self.Outputs(
            positive=with_concat_latent(inputs.positive, concat_latent),
            negative=with_concat_latent(inputs.negative, concat_latent),
            latent=Latent(samples=torch.zeros_like(concat_latent)),
        )


NODES = [InstructPixToPixConditioning]
