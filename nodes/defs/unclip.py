"""unCLIP nodes: unCLIPCheckpointLoader (SD2.1 unCLIP files) and unCLIPConditioning (image prompts)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from engine import Input, Node, NodeInputs, NodeOutputs, Output, RunContext, UserFacingError
from nodes.defs.clip_vision import load_vision_handle
from nodes.defs.loaders import CheckpointLoaderSimple, checkpoint_outputs
from nodes.diffusion.checkpoint_io import read_header
from nodes.diffusion.families import UNCLIP_VISION_PREFIX
from nodes.diffusion.unclip import UnclipImage
from nodes.types import ClipVision, ClipVisionOutput, CondEntry, Conditioning


class unCLIPCheckpointLoader(Node):  # noqa: N801 - ComfyUI's node id is the class name
    """Loads an SD2.1 unCLIP checkpoint: MODEL, CLIP and VAE plus the CLIP image tower it carries."""

    class_type = "unCLIPCheckpointLoader"
    category = "loaders"
    description = (
        "Reads a Stable Diffusion 2.1 unCLIP checkpoint, which conditions on image embeddings; the image "
        "encoder inside the file comes out as CLIP_VISION."
    )

    class Inputs(NodeInputs):
        ckpt_name: str = Input(
            description="An unCLIP file from models/checkpoints.", combo_source="checkpoints"
        )

    class Outputs(CheckpointLoaderSimple.Outputs):
        CLIP_VISION: ClipVision = Output(
            name="CLIP_VISION", description="The CLIP image encoder stored in the checkpoint."
        )

    def run(self, ctx: RunContext, inputs: Inputs) -> Outputs:
        """Load the diffusion parts as the plain loader does, then the embedded image tower."""
        path = Path(ctx.model_paths.resolve("checkpoints", inputs.ckpt_name))
        if path.suffix.lower() in (".safetensors", ".sft"):
            header, _ = read_header(path)
            if not any(k.startswith(UNCLIP_VISION_PREFIX) for k in header):
                raise UserFacingError(
                    f"{path.name} holds no CLIP image encoder ({UNCLIP_VISION_PREFIX}*); it is not an unCLIP "
                    "checkpoint. Load it with Load Checkpoint, and an image encoder with Load CLIP Vision."
                )
        model, clip, vae = checkpoint_outputs(ctx.models, path, ctx.precision)
        vision = load_vision_handle(ctx, path, UNCLIP_VISION_PREFIX)
        return self.Outputs(MODEL=model, CLIP=clip, VAE=vae, CLIP_VISION=vision)


class unCLIPConditioning(Node):  # noqa: N801 - ComfyUI's node id is the class name
    """Adds an image prompt (CLIP image embeddings) to a conditioning for unCLIP models."""

    class_type = "unCLIPConditioning"
    category = "conditioning"
    description = (
        "Attaches encoded images to the conditioning; an unCLIP model then follows the image as well as the "
        "text. Several applications add up."
    )

    class Inputs(NodeInputs):
        conditioning: Conditioning = Input(description="The conditioning to add the image prompt to.")
        clip_vision_output: ClipVisionOutput = Input(description="The encoded images (CLIP Vision Encode).")
        strength: float = Input(
            1.0,
            ge=-10.0,
            le=10.0,
            step=0.01,
            description="Scale of the image embedding; 0 leaves the input as is.",
        )
        noise_augmentation: float = Input(
            0.0,
            ge=0.0,
            le=1.0,
            step=0.01,
            description="How much noise blurs the image embedding: higher values keep less of the image.",
        )

    class Outputs(NodeOutputs):
        CONDITIONING: Conditioning = Output(
            name="CONDITIONING", description="The conditioning with the image prompt attached."
        )

    def run(self, ctx: RunContext, inputs: Inputs) -> Outputs:
        """Append the image to every entry's list of unCLIP images."""
        if inputs.strength == 0:
            return self.Outputs(CONDITIONING=inputs.conditioning)
        image = UnclipImage(
            inputs.clip_vision_output.image_embeds, inputs.strength, inputs.noise_augmentation
        )
        return self.Outputs(CONDITIONING=with_unclip_image(inputs.conditioning, image))


def with_unclip_image(conditioning: Conditioning, image: UnclipImage) -> Conditioning:
    """A copy of the conditioning whose every entry lists `image` after its earlier unCLIP images."""

    def add(entry: CondEntry) -> CondEntry:
        images = (*entry.extras.get("unclip", ()), image)
        return replace(entry, extras={**entry.extras, "unclip": images})

    return Conditioning(entries=tuple(add(e) for e in conditioning.entries))


NODES = [unCLIPCheckpointLoader, unCLIPConditioning]
