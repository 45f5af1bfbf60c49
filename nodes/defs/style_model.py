"""Style-model nodes: StyleModelLoader and StyleModelApply (image style tokens appended to a prompt)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Literal

import torch

from engine import Input, Node, NodeInputs, NodeOutputs, Output, RunContext, UserFacingError
from nodes.diffusion.checkpoint_io import read_weights
from nodes.diffusion.style_model import ReduxEncoder, StyleAdapter, build_style_model
from nodes.types import ClipVisionOutput, Conditioning, StyleModel


def style_adapter(ctx: RunContext, handle: StyleModel) -> StyleAdapter | ReduxEncoder:
    """The style model for a handle, loaded through the model store (reloaded if it was evicted)."""

    def load() -> torch.nn.Module:
        path = Path(handle.path)
        return build_style_model(read_weights(path), path.name)

    adapter = ctx.models.get(handle.store_key, load)
    assert isinstance(adapter, StyleAdapter | ReduxEncoder)
    return adapter


class StyleModelLoader(Node):
    """Loads a style model (T2I-Adapter style or FLUX Redux) from models/style_models."""

    class_type = "StyleModelLoader"
    display_name = "Load Style Model"
    category = "loaders"
    description = "Reads a style model that turns CLIP image features into extra prompt tokens."

    class Inputs(NodeInputs):
        style_model_name: str = Input(
            description="A file from models/style_models.", combo_source="style_models"
        )

    class Outputs(NodeOutputs):
        STYLE_MODEL: StyleModel = Output(name="STYLE_MODEL", description="The style model.")

    def run(self, ctx: RunContext, inputs: Inputs) -> Outputs:
        """Build the adapter once (the store keeps it) and hand out a handle."""
        handle = StyleModel(path=str(Path(ctx.model_paths.resolve("style_models", inputs.style_model_name))))
        style_adapter(ctx, handle)
        return self.Outputs(STYLE_MODEL=handle)


class StyleModelApply(Node):
    """Appends an image's style tokens to every entry of a conditioning."""

    class_type = "StyleModelApply"
    display_name = "Apply Style Model"
    category = "conditioning/style_model"
    description = (
        "Runs the style model on CLIP vision features (ViT-L/14 for T2I-Adapter style) and adds the "
        "resulting tokens after the prompt's, so the image's style steers the generation."
    )

    class Inputs(NodeInputs):
        conditioning: Conditioning = Input(description="The conditioning to add the style tokens to.")
        style_model: StyleModel = Input(description="The style model.")
        clip_vision_output: ClipVisionOutput = Input(description="The encoded style image(s).")
        strength: float = Input(
            1.0, ge=0.0, le=10.0, step=0.001, description="How strongly the style tokens act."
        )
        strength_type: Literal["multiply", "attn_bias"] = Input(
            description="multiply: scale the style tokens; attn_bias: bias attention towards them "
            "(only the neutral strength 1.0 is supported for attn_bias)."
        )

    class Outputs(NodeOutputs):
        CONDITIONING: Conditioning = Output(
            name="CONDITIONING", description="The conditioning with style tokens."
        )

    def run(self, ctx: RunContext, inputs: Inputs) -> Outputs:
        """Style tokens of all images side by side, appended after each entry's text tokens."""
        if inputs.strength_type == "attn_bias" and inputs.strength != 1.0:
            raise UserFacingError(
                "StyleModelApply: strength_type attn_bias with a strength other than 1.0 needs attention masks, "
                "which diffgraph's samplers do not support yet; use multiply"
            )
        adapter = style_adapter(ctx, inputs.style_model)
        param = next(iter(adapter.parameters()))
        with torch.inference_mode():
            tokens = adapter(inputs.clip_vision_output.last_hidden_state.to(param.device, param.dtype))
        tokens = tokens.float().cpu().flatten(0, 1).unsqueeze(0)
        if inputs.strength_type == "multiply":
            tokens = tokens * inputs.strength
        entries = []
        for e in inputs.conditioning.entries:
            if e.embeds.shape[-1] != tokens.shape[-1]:
                raise UserFacingError(
                    f"StyleModelApply: the style model makes {tokens.shape[-1]}-wide tokens but the conditioning's "
                    f"are {e.embeds.shape[-1]} wide; use a text encoder of the model the style model was made for"
                )
            joined = torch.cat([e.embeds, tokens.to(e.embeds).expand(e.embeds.shape[0], -1, -1)], dim=1)
            entries.append(replace(e, embeds=joined))
        return self.Outputs(CONDITIONING=Conditioning(entries=tuple(entries)))


NODES = [StyleModelLoader, StyleModelApply]
