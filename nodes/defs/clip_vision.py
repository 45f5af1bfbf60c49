"""CLIP vision nodes: CLIPVisionLoader and CLIPVisionEncode (image prompts for unCLIP and style models)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from engine import Input, Node, NodeInputs, NodeOutputs, Output, RunContext
from nodes.diffusion.checkpoint_io import read_weights
from nodes.diffusion.clip_vision import VisionTower, build_vision_tower, encode_images
from nodes.diffusion.loader import component_dtype
from nodes.types import ClipVision, ClipVisionOutput, Image


def vision_tower(ctx: RunContext, handle: ClipVision) -> VisionTower:
    """The tower for a handle, loaded through the model store (reloaded if it was evicted)."""

    def load() -> VisionTower:
        path = Path(handle.path)
        sd = read_weights(path, want=lambda k: k.startswith(handle.prefix))
        return build_vision_tower(sd, component_dtype(ctx.models, "clip"), path.name)

    tower = ctx.models.get(handle.store_key, load)
    assert isinstance(tower, VisionTower)
    return tower


def load_vision_handle(ctx: RunContext, path: Path, prefix: str = "") -> ClipVision:
    """Load (or reuse) a tower and return its handle, named after the detected architecture."""
    handle = ClipVision(path=str(path), prefix=prefix)
    tower = vision_tower(ctx, handle)
    size = f"{tower.config.hidden_size}x{tower.config.num_hidden_layers}"
    return ClipVision(path=str(path), prefix=prefix, name=size)


class CLIPVisionLoader(Node):
    """Loads a CLIP vision tower (ViT-L/14, ViT-H/14, ViT-bigG/14) or a SigLIP one from models/clip_vision."""

    class_type = "CLIPVisionLoader"
    display_name = "Load CLIP Vision"
    category = "loaders"
    description = (
        "Reads a CLIP image encoder in the transformers or the OpenCLIP layout, or a SigLIP encoder; its "
        "kind and size are recognised from the weights."
    )

    class Inputs(NodeInputs):
        clip_name: str = Input(description="A file from models/clip_vision.", combo_source="clip_vision")

    class Outputs(NodeOutputs):
        CLIP_VISION: ClipVision = Output(name="CLIP_VISION", description="The image encoder.")

    def run(self, ctx: RunContext, inputs: Inputs) -> Outputs:
        """Build the tower once (the store keeps it) and hand out a handle."""
        path = Path(ctx.model_paths.resolve("clip_vision", inputs.clip_name))
        return self.Outputs(CLIP_VISION=load_vision_handle(ctx, path))


class CLIPVisionEncode(Node):
    """Encodes images with a CLIP vision tower."""

    class_type = "CLIPVisionEncode"
    display_name = "CLIP Vision Encode"
    category = "conditioning"
    description = "Turns images into CLIP image embeddings for unCLIP conditioning and style models."

    class Inputs(NodeInputs):
        clip_vision: ClipVision = Input(description="The image encoder.")
        image: Image = Input(description="The images to encode.")
        crop: Literal["center", "none"] = Input(
            description="center: scale the short side to the encoder's size and cut out the middle; "
            "none: squash the whole image to a square."
        )

    class Outputs(NodeOutputs):
        CLIP_VISION_OUTPUT: ClipVisionOutput = Output(
            name="CLIP_VISION_OUTPUT", description="The image embeddings and hidden states."
        )

    def run(self, ctx: RunContext, inputs: Inputs) -> Outputs:
        """Preprocess as ComfyUI does, run the tower, keep the three outputs consumers read."""
        tower = vision_tower(ctx, inputs.clip_vision)
        last, penultimate, embeds, layers = encode_images(tower, inputs.image.pixels, inputs.crop == "center")
        out = ClipVisionOutput(
            last_hidden_state=last,
            penultimate_hidden_states=penultimate,
            image_embeds=embeds,
            all_hidden_states=layers,
        )
        return self.Outputs(CLIP_VISION_OUTPUT=out)


NODES = [CLIPVisionLoader, CLIPVisionEncode]
