"""Model-patch nodes: ModelPatchLoader (models/model_patches) and USOStyleReference (FLUX USO style images)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from engine import Input, Node, NodeInputs, NodeOutputs, Output, RunContext, UserFacingError
from nodes.diffusion.flux import FAMILIES as FLUX_FAMILIES
from nodes.diffusion.model_handle import DiffusionModel
from nodes.diffusion.uso import StyleTokens, branch_states, load_uso_projector
from nodes.types import ClipVisionOutput, ModelPatchFile


class ModelPatchLoader(Node):
    """Loads an add-on network for a diffusion model (USO's style projector) from models/model_patches."""

    class_type = "ModelPatchLoader"
    display_name = "ModelPatchLoader"
    category = "advanced/loaders"
    description = (
        "Reads a model patch file; its kind is recognised from the weights (a USO style projector for "
        "FLUX), and other files are refused."
    )

    class Inputs(NodeInputs):
        name: str = Input(description="A file from models/model_patches.", combo_source="model_patches")

    class Outputs(NodeOutputs):
        MODEL_PATCH: ModelPatchFile = Output(name="MODEL_PATCH", description="The patch network.")

    def run(self, ctx: RunContext, inputs: Inputs) -> Outputs:
        """Recognise the file, build the network once (the store keeps it) and hand out a handle."""
        path = Path(ctx.model_paths.resolve("model_patches", inputs.name))
        # Loading recognises the kind: anything but a USO projector is refused with what was expected.
        load_uso_projector(ctx.models, str(path))
        return self.Outputs(MODEL_PATCH=ModelPatchFile(path=str(path), kind="uso_projector"))


class USOStyleReference(Node):
    """Steers a FLUX model towards the style of a reference image (USO)."""

    class_type = "USOStyleReference"
    display_name = "USOStyleReference"
    category = "advanced/model_patches/flux"
    description = (
        "Projects the SigLIP features of a style image into extra text tokens that every FLUX call sees "
        "before the prompt; use it with the USO LoRA."
    )

    class Inputs(NodeInputs):
        model: DiffusionModel = Input(description="The FLUX model to steer; the original stays unchanged.")
        model_patch: ModelPatchFile = Input(description="The USO style projector (ModelPatchLoader).")
        clip_vision_output: ClipVisionOutput = Input(
            description="The style image encoded with a SigLIP vision model (CLIPVisionEncode)."
        )

    class Outputs(NodeOutputs):
        MODEL: DiffusionModel = Output(name="MODEL", description="The model with the style tokens added.")

    def run(self, ctx: RunContext, inputs: Inputs) -> Outputs:
        """Keep the three SigLIP layers USO reads; the projector runs inside each model call."""
        model, patch, vision = inputs.model, inputs.model_patch, inputs.clip_vision_output
        if model.family not in FLUX_FAMILIES:
            raise UserFacingError(f"USOStyleReference: model is {model.family}; USO works on FLUX models")
        if patch.kind != "uso_projector":
            raise UserFacingError(
                f"USOStyleReference: model_patch is a {patch.kind}, not a USO style projector"
            )
        if vision.all_hidden_states is None:
            raise UserFacingError(
                "USOStyleReference: clip_vision_output has no per-layer states; encode the image with a "
                "SigLIP vision model (sigclip_vision_patch14_384)"
            )
        try:
            states = branch_states(vision.all_hidden_states, "USOStyleReference")
        except ValueError as exc:
            raise UserFacingError(str(exc)) from exc
        sizes = load_uso_projector(ctx.models, patch.path).sizes
        if tuple(states.shape[-2:]) != (sizes.tokens, sizes.width):
            raise UserFacingError(
                f"USOStyleReference: the image encoder gives {states.shape[-2]} tokens of width "
                f"{states.shape[-1]}; the projector takes {sizes.tokens} of width {sizes.width}"
            )
        style = StyleTokens(path=patch.path, states=states)
        return self.Outputs(MODEL=replace(model, style_tokens=(*model.style_tokens, style)))


NODES = [ModelPatchLoader, USOStyleReference]
