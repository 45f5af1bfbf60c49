"""FLUX Kontext nodes: reference latents on conditioning, their layout method, Kontext's preferred sizes."""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

from engine import Input, Node, NodeInputs, NodeOutputs, Output, RunContext
from nodes.diffusion.flux_kontext import REFERENCE_LATENTS, REFERENCE_METHOD
from nodes.ops.resize import common_upscale
from nodes.types import Conditioning, Image, Latent

# (width, height) pairs of about one megapixel that Kontext was trained on (ComfyUI 0.3.64's list).
KONTEXT_RESOLUTIONS = (
    (672, 1568),
    (688, 1504),
    (720, 1456),
    (752, 1392),
    (800, 1328),
    (832, 1248),
    (880, 1184),
    (944, 1104),
    (1024, 1024),
    (1104, 944),
    (1184, 880),
    (1248, 832),
    (1328, 800),
    (1392, 752),
    (1456, 720),
    (1504, 688),
    (1568, 672),
)


def kontext_size(width: int, height: int) -> tuple[int, int]:
    """The preferred (width, height) whose aspect ratio is nearest the image's (ties: the narrower)."""
    aspect = width / height
    _, best_w, best_h = min((abs(aspect - w / h), w, h) for w, h in KONTEXT_RESOLUTIONS)
    return best_w, best_h


class ReferenceLatent(Node):
    """Adds a reference image's latent to conditioning for edit models (FLUX Kontext)."""

    class_type = "ReferenceLatent"
    category = "advanced/conditioning/edit_models"
    description = (
        "Gives an edit model (FLUX Kontext) an image to work from: the latent is appended to the "
        "conditioning's reference list. Chain several for several reference images."
    )

    class Inputs(NodeInputs):
        conditioning: Conditioning = Input(description="The conditioning to carry the reference.")
        latent: Latent | None = Input(
            None,
            optional=True,
            description="The encoded reference image; unlinked leaves the conditioning as it is.",
        )

    class Outputs(NodeOutputs):
        CONDITIONING: Conditioning = Output(
            name="CONDITIONING", description="The conditioning with the reference latent added."
        )

    def run(self, ctx: RunContext, inputs: Inputs) -> Outputs:
        """Append the latent's samples to every entry's reference tuple."""
        if inputs.latent is None:
            return self.Outputs(CONDITIONING=inputs.conditioning)
        samples = inputs.latent.samples
        entries = tuple(
            replace(
                e, extras={**e.extras, REFERENCE_LATENTS: (*e.extras.get(REFERENCE_LATENTS, ()), samples)}
            )
            for e in inputs.conditioning.entries
        )
        return self.Outputs(CONDITIONING=Conditioning(entries=entries))


class FluxKontextMultiReferenceLatentMethod(Node):
    """Chooses how several Kontext reference latents are positioned for the model."""

    class_type = "FluxKontextMultiReferenceLatentMethod"
    category = "advanced/conditioning/flux"
    experimental = True
    description = (
        "How the model tells several reference images apart: 'offset' places them side by side in one "
        "shared space (Kontext's default), 'index' gives each its own index, 'uxo/uno' moves them past "
        "the image diagonally (for models trained that way)."
    )

    class Inputs(NodeInputs):
        conditioning: Conditioning = Input(description="The conditioning whose reference latents are placed.")
        reference_latents_method: Literal["offset", "index", "uxo/uno"] = Input(
            "offset", description="The placement scheme of the reference latents."
        )

    class Outputs(NodeOutputs):
        CONDITIONING: Conditioning = Output(
            name="CONDITIONING", description="The conditioning with the placement scheme set."
        )

    def run(self, ctx: RunContext, inputs: Inputs) -> Outputs:
        """Store the method on every entry ('uxo/uno' is the model's 'uxo')."""
        method = "uxo" if "uxo" in inputs.reference_latents_method else inputs.reference_latents_method
        entries = tuple(
            replace(e, extras={**e.extras, REFERENCE_METHOD: method}) for e in inputs.conditioning.entries
        )
        return self.Outputs(CONDITIONING=Conditioning(entries=entries))


class FluxKontextImageScale(Node):
    """Resizes an image to the Kontext training size of the nearest aspect ratio."""

    class_type = "FluxKontextImageScale"
    category = "advanced/conditioning/flux"
    description = (
        "Resizes the image to the size FLUX Kontext handles best for its aspect ratio (about one "
        "megapixel), cropping the centre to that ratio and resampling with Lanczos."
    )

    class Inputs(NodeInputs):
        image: Image = Input(description="The image to resize.")

    class Outputs(NodeOutputs):
        IMAGE: Image = Output(name="IMAGE", description="The resized image.")

    def run(self, ctx: RunContext, inputs: Inputs) -> Outputs:
        """Pick the nearest preferred size and resize to it (centre crop, Lanczos on 8-bit values)."""
        pixels = inputs.image.pixels
        width, height = kontext_size(pixels.shape[2], pixels.shape[1])
        out = common_upscale(pixels.movedim(-1, 1), width, height, "lanczos", "center").movedim(1, -1)
        return self.Outputs(IMAGE=Image(pixels=out))


NODES = [ReferenceLatent, FluxKontextMultiReferenceLatentMethod, FluxKontextImageScale]
