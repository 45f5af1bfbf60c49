"""GLIGEN nodes: GLIGENLoader and GLIGENTextBoxApply (a phrase placed in a box of the image)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from engine import Input, Node, NodeInputs, NodeOutputs, Output, RunContext, UserFacingError
from nodes.defs.image_ops import MAX_RESOLUTION
from nodes.defs.text import encode
from nodes.diffusion.checkpoint_io import read_weights
from nodes.diffusion.gligen import GligenBox, split_gligen
from nodes.diffusion.model_handle import ClipHandle
from nodes.types import Conditioning, Gligen


class GLIGENLoader(Node):
    """Loads a GLIGEN text-box model from models/gligen."""

    class_type = "GLIGENLoader"
    category = "loaders"
    description = "Reads a GLIGEN file: the layers that let text phrases be placed in boxes of the image."

    class Inputs(NodeInputs):
        gligen_name: str = Input(description="A file from models/gligen.", combo_source="gligen")

    class Outputs(NodeOutputs):
        GLIGEN: Gligen = Output(name="GLIGEN", description="The GLIGEN model, for GLIGEN Textbox Apply.")

    def run(self, ctx: RunContext, inputs: Inputs) -> Outputs:
        """Check the file is a GLIGEN text-box model; its layers join the UNet when sampling."""
        path = Path(ctx.model_paths.resolve("gligen", inputs.gligen_name))
        split_gligen(read_weights(path), path.name)
        return self.Outputs(GLIGEN=Gligen(path=str(path)))


class GLIGENTextBoxApply(Node):
    """Places a phrase in a box of the image through GLIGEN."""

    class_type = "GLIGENTextBoxApply"
    category = "conditioning/gligen"
    description = (
        "Adds a text box to the conditioning: the phrase is steered into the given rectangle. Chain several "
        "to place several phrases (up to 30)."
    )

    class Inputs(NodeInputs):
        conditioning_to: Conditioning = Input(description="The conditioning to add the box to.")
        clip: ClipHandle = Input(description="The text encoder that encodes the phrase.")
        gligen_textbox_model: Gligen = Input(description="The GLIGEN model.")
        text: str = Input(
            "", description="The phrase to place in the box.", multiline=True, dynamicPrompts=True
        )
        width: int = Input(64, ge=8, le=MAX_RESOLUTION, step=8, description="Box width in pixels.")
        height: int = Input(64, ge=8, le=MAX_RESOLUTION, step=8, description="Box height in pixels.")
        x: int = Input(0, ge=0, le=MAX_RESOLUTION, step=8, description="Box left edge in pixels.")
        y: int = Input(0, ge=0, le=MAX_RESOLUTION, step=8, description="Box top edge in pixels.")

    class Outputs(NodeOutputs):
        CONDITIONING: Conditioning = Output(name="CONDITIONING", description="The conditioning with the box.")

    def run(self, ctx: RunContext, inputs: Inputs) -> Outputs:
        """Encode the phrase (its pooled embedding) and append the box to every entry's GLIGEN boxes."""
        if any(spec.with_projection for spec in inputs.clip.stack(ctx.models).specs):
            raise UserFacingError(
                "GLIGENTextBoxApply: GLIGEN text boxes need an SD1.x text encoder (CLIP ViT-L); this CLIP is "
                f"{inputs.clip.family}"
            )
        pooled = encode(ctx, inputs.clip, inputs.text).pooled
        assert pooled is not None
        box = GligenBox(pooled, inputs.height // 8, inputs.width // 8, inputs.y // 8, inputs.x // 8)
        path = inputs.gligen_textbox_model.path
        entries = []
        for e in inputs.conditioning_to.entries:
            earlier = e.extras.get("gligen")
            boxes = (*earlier[1], box) if earlier else (box,)
            entries.append(replace(e, extras={**e.extras, "gligen": (path, boxes)}))
        return self.Outputs(CONDITIONING=Conditioning(entries=tuple(entries)))


NODES = [GLIGENLoader, GLIGENTextBoxApply]
