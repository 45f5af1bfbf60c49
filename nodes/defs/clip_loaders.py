"""Text encoder loaders for separate files: CLIPLoader, DualCLIPLoader, TripleCLIPLoader."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from engine import Input, Node, NodeInputs, NodeOutputs, Output, RunContext
from nodes.diffusion.model_handle import ClipHandle
from nodes.diffusion.recipe import ComponentRecipe, Variant
from nodes.diffusion.text_encoders import COMPUTE_DTYPE, ClipTypeError, detect_kind, family_for

# ComfyUI 0.3.64's choices, in its order; the types diffgraph cannot build are refused at run time.
SingleClipType = Literal[
    "stable_diffusion",
    "stable_cascade",
    "sd3",
    "stable_audio",
    "mochi",
    "ltxv",
    "pixart",
    "cosmos",
    "lumina2",
    "wan",
    "hidream",
    "chroma",
    "ace",
    "omnigen2",
    "qwen_image",
    "hunyuan_image",
]
DualClipType = Literal["sdxl", "sd3", "flux", "hunyuan_video", "hidream", "hunyuan_image"]
Device = Literal["default", "cpu"]
_FOLDER = "text_encoders"
_FILE_HELP = (
    "A text encoder file or diffusers text encoder folder from models/text_encoders (or models/clip)."
)


def clip_from_files(ctx: RunContext, names: list[str], clip_type: str, device: str = "default") -> ClipHandle:
    """Detect each file's encoder, pick the family for the type, and load the encoders into the store."""
    paths = [Path(ctx.model_paths.resolve(_FOLDER, n)) for n in names]
    kinds = [detect_kind(p)[0] for p in paths]
    family = family_for(clip_type, kinds, [p.name for p in paths])
    recipe = ComponentRecipe(
        str(paths[0]), family, "clip", variant=Variant.TEXT_ENCODERS, paths=tuple(str(p) for p in paths)
    )
    where = "cpu" if device == "cpu" else str(ctx.models.device)
    if device == "cpu" and str(ctx.models.device) != "cpu":
        raise ClipTypeError("device 'cpu' for text encoders on a GPU run is not supported yet; use default")
    handle = ClipHandle(recipe, compute_dtype=COMPUTE_DTYPE, device=where)
    handle.load(ctx.models)
    return handle


class _ClipOut(NodeOutputs):
    """The one CLIP output of every loader here."""

    CLIP: ClipHandle = Output(
        name="CLIP", description="The text encoder(s), ready for the text encode nodes."
    )


class CLIPLoader(Node):
    """Loads one text encoder file as a CLIP for the chosen model type."""

    class_type = "CLIPLoader"
    display_name = "Load CLIP"
    category = "advanced/loaders"
    description = (
        "Loads one text encoder file. stable_diffusion: CLIP-L (or CLIP-G as the SDXL refiner's); "
        "sd3: any one of CLIP-L, CLIP-G, T5-XXL (the others count as zeros)."
    )

    class Inputs(NodeInputs):
        clip_name: str = Input(description=_FILE_HELP, combo_source=_FOLDER)
        type: SingleClipType = Input(
            "stable_diffusion", description="Which model family the encoder will condition."
        )
        device: Device = Input(
            "default",
            optional=True,
            advanced=True,
            description="Where the encoder runs: the usual device, or the CPU.",
        )

    class Outputs(_ClipOut):
        """The loaded CLIP."""

    def run(self, ctx: RunContext, inputs: Inputs) -> Outputs:
        """Load the file after checking its tensors fit the type."""
        return self.Outputs(CLIP=clip_from_files(ctx, [inputs.clip_name], inputs.type, inputs.device))


class DualCLIPLoader(Node):
    """Loads two text encoder files as one CLIP (SDXL, SD3 or FLUX)."""

    class_type = "DualCLIPLoader"
    category = "advanced/loaders"
    description = (
        "Loads two text encoder files as one CLIP. sdxl: CLIP-L + CLIP-G; sd3: two of CLIP-L, CLIP-G, "
        "T5-XXL; flux: CLIP-L + T5-XXL. Either order works: each file's kind is read from its tensors."
    )

    class Inputs(NodeInputs):
        clip_name1: str = Input(description=_FILE_HELP, combo_source=_FOLDER)
        clip_name2: str = Input(description=_FILE_HELP, combo_source=_FOLDER)
        type: DualClipType = Input("sdxl", description="Which model family the encoders will condition.")
        device: Device = Input(
            "default",
            optional=True,
            advanced=True,
            description="Where the encoders run: the usual device, or the CPU.",
        )

    class Outputs(_ClipOut):
        """The loaded CLIP."""

    def run(self, ctx: RunContext, inputs: Inputs) -> Outputs:
        """Load both files as one CLIP."""
        names = [inputs.clip_name1, inputs.clip_name2]
        return self.Outputs(CLIP=clip_from_files(ctx, names, inputs.type, inputs.device))


class TripleCLIPLoader(Node):
    """Loads SD3's three text encoders (CLIP-L, CLIP-G, T5-XXL) as one CLIP."""

    class_type = "TripleCLIPLoader"
    category = "advanced/loaders"
    description = "Loads CLIP-L, CLIP-G and T5-XXL files (in any order) as one SD3 / SD3.5 CLIP."

    class Inputs(NodeInputs):
        clip_name1: str = Input(description=_FILE_HELP, combo_source=_FOLDER)
        clip_name2: str = Input(description=_FILE_HELP, combo_source=_FOLDER)
        clip_name3: str = Input(description=_FILE_HELP, combo_source=_FOLDER)

    class Outputs(_ClipOut):
        """The loaded CLIP."""

    def run(self, ctx: RunContext, inputs: Inputs) -> Outputs:
        """Load the three files as an SD3 CLIP; each kind must appear once."""
        names = [inputs.clip_name1, inputs.clip_name2, inputs.clip_name3]
        paths = [Path(ctx.model_paths.resolve(_FOLDER, n)) for n in names]
        kinds = sorted(detect_kind(p)[0] for p in paths)
        if kinds != ["clip_g", "clip_l", "t5xxl"]:
            found = ", ".join(f"{p.name} ({detect_kind(p)[0]})" for p in paths)
            raise ClipTypeError(
                f"TripleCLIPLoader takes one CLIP-L, one CLIP-G and one T5-XXL file; got {found}"
            )
        return self.Outputs(CLIP=clip_from_files(ctx, names, "sd3"))


NODES = [CLIPLoader, DualCLIPLoader, TripleCLIPLoader]
