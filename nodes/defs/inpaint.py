"""Inpainting nodes: VAEEncodeForInpaint, InpaintModelConditioning and DifferentialDiffusion.

Facts followed (ComfyUI's nodes, reimplemented): the mask is resized (bilinear) to the image and cropped
with it to multiples of 8 around the centre; masked pixels (mask rounded to 1) become mid-grey 0.5
before encoding; VAEEncodeForInpaint's noise mask is the rounded mask dilated by a k x k box
(padding ceil((k - 1) / 2)), clamped to 0..1 and rounded. InpaintModelConditioning encodes the
unmasked image as the latent and the grey-filled one as the inpainting UNet's masked-image input.
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch
import torch.nn.functional as F

from engine import Input, Node, NodeInputs, NodeOutputs, Output, RunContext
from nodes.diffusion import vae as vae_ops
from nodes.diffusion.model_handle import DiffusionModel, VaeHandle
from nodes.types import Conditioning, Image, Latent, Mask

MIDGREY = 0.5


def pixel_mask(pixels: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixels and mask [B, 1, h, w] at the image size, both cropped to multiples of 8 (centred)."""
    height, width = pixels.shape[1], pixels.shape[2]
    mask = F.interpolate(
        mask.reshape(-1, 1, mask.shape[-2], mask.shape[-1]).float(), size=(height, width), mode="bilinear"
    )
    h8, w8 = (height // 8) * 8, (width // 8) * 8
    if (h8, w8) != (height, width):
        dy, dx = (height % 8) // 2, (width % 8) // 2
        pixels = pixels[:, dy : dy + h8, dx : dx + w8, :]
        mask = mask[:, :, dy : dy + h8, dx : dx + w8]
    return pixels, mask


def grey_fill(pixels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """A copy of IMAGE pixels with every pixel where the rounded mask is 1 set to mid-grey."""
    keep = (1.0 - mask.round()).squeeze(1).unsqueeze(-1)
    return (pixels[..., :3] - MIDGREY) * keep + MIDGREY


def grow_mask(mask: torch.Tensor, grow_by: int) -> torch.Tensor:
    """The rounded [B, 1, h, w] mask dilated by a grow_by x grow_by box, cut back to its size and rounded."""
    if grow_by == 0:
        grown = mask
    else:
        kernel = torch.ones((1, 1, grow_by, grow_by))
        padding = math.ceil((grow_by - 1) / 2)
        grown = torch.clamp(F.conv2d(mask.round(), kernel, padding=padding), 0, 1)
    return grown[:, :, : mask.shape[2], : mask.shape[3]].round()


class VAEEncodeForInpaint(Node):
    """Encodes an image with its masked area greyed out and attaches a grown noise mask."""

    class_type = "VAEEncodeForInpaint"
    display_name = "VAE Encode (for Inpainting)"
    category = "latent/inpaint"
    description = (
        "Encodes an image for inpainting: the masked area is replaced by grey and only it is resampled."
    )

    class Inputs(NodeInputs):
        pixels: Image = Input(description="The image to inpaint.")
        vae: VaeHandle = Input(description="The VAE used for encoding.")
        mask: Mask = Input(description="Where to repaint (1 = repaint).")
        grow_mask_by: int = Input(
            6, ge=0, le=64, step=1, description="Pixels added around the mask so the new area blends in."
        )

    class Outputs(NodeOutputs):
        LATENT: Latent = Output(name="LATENT", description="The latent with its noise mask.")

    def run(self, ctx: RunContext, inputs: Inputs) -> Outputs:
        """Grey-fill, encode, attach the grown mask."""
        pixels, mask = pixel_mask(inputs.pixels.pixels, inputs.mask.mask)
        samples = vae_ops.encode(inputs.vae.autoencoder(ctx.models), grey_fill(pixels, mask))
        return self.Outputs(LATENT=Latent(samples=samples, noise_mask=grow_mask(mask, inputs.grow_mask_by)))


class InpaintModelConditioning(Node):
    """Prepares conditioning and latent for a 9-channel inpainting model (or any model, with the mask)."""

    class_type = "InpaintModelConditioning"
    category = "conditioning/inpaint"
    description = (
        "Adds the masked image and the mask to both conditionings, as inpainting models expect, and "
        "encodes the image as the starting latent."
    )

    class Inputs(NodeInputs):
        positive: Conditioning = Input(description="The positive conditioning.")
        negative: Conditioning = Input(description="The negative conditioning.")
        vae: VaeHandle = Input(description="The VAE used for encoding.")
        pixels: Image = Input(description="The image to inpaint.")
        mask: Mask = Input(description="Where to repaint (1 = repaint).")
        noise_mask: bool = Input(
            True,
            description="Also limit sampling to the mask (keeps the rest exactly; some models do better "
            "without it).",
        )

    class Outputs(NodeOutputs):
        positive: Conditioning = Output(name="positive", description="Positive with the inpainting inputs.")
        negative: Conditioning = Output(name="negative", description="Negative with the inpainting inputs.")
        latent: Latent = Output(name="latent", description="The encoded image (with the noise mask).")

    def run(self, ctx: RunContext, inputs: Inputs) -> Outputs:
        """Encode the grey-filled image for the model input and the original one as the latent."""
        vae = inputs.vae.autoencoder(ctx.models)
        pixels, mask = pixel_mask(inputs.pixels.pixels, inputs.mask.mask)
        concat_latent = vae_ops.encode(vae, grey_fill(pixels, mask))
        samples = vae_ops.encode(vae, inputs.pixels.pixels)
        latent = Latent(samples=samples, noise_mask=mask if inputs.noise_mask else None)

        def attach(cond: Conditioning) -> Conditioning:
            return Conditioning(
                entries=tuple(replace(e, concat_latent=concat_latent, concat_mask=mask) for e in cond.entries)
            )

        return self.Outputs(positive=attach(inputs.positive), negative=attach(inputs.negative), latent=latent)


class DifferentialDiffusion(Node):
    """Makes a soft noise mask repaint gradually: stronger mask values are repainted for more steps."""

    class_type = "DifferentialDiffusion"
    display_name = "Differential Diffusion"
    category = "_for_testing"
    experimental = True
    description = (
        "With a soft (feathered) noise mask, each pixel is repainted only for the last part of the steps "
        "in proportion to its mask value, blending edits smoothly. Without a noise mask it does nothing."
    )

    class Inputs(NodeInputs):
        model: DiffusionModel = Input(description="The model to sample with.")
        strength: float = Input(
            1.0,
            ge=0.0,
            le=1.0,
            step=0.01,
            optional=True,
            description="1 uses the per-step hard mask; lower values mix the soft mask back in.",
        )

    class Outputs(NodeOutputs):
        MODEL: DiffusionModel = Output(name="MODEL", description="The model with differential masking on.")

    def run(self, ctx: RunContext, inputs: Inputs) -> Outputs:
        """A handle carrying the strength; the sampler thresholds the mask at every step."""
        return self.Outputs(MODEL=replace(inputs.model, differential=inputs.strength))


NODES = [VAEEncodeForInpaint, InpaintModelConditioning, DifferentialDiffusion]
