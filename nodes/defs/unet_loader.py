"""UNETLoader: a standalone diffusion model (FLUX.1 today) from models/diffusion_models or models/unet."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from engine import Input, Node, NodeInputs, NodeOutputs, Output, RunContext
from nodes.defs.loaders import dit_model_handle
from nodes.diffusion.loader import effective_precision
from nodes.diffusion.model_handle import DiffusionModel
from nodes.diffusion.recipe import ComponentRecipe, Variant
from nodes.diffusion.unet_file import inspect_diffusion_model


class UNETLoader(Node):
    """Loads a diffusion model file on its own (text encoders and VAE come from their own loaders)."""

    class_type = "UNETLoader"
    display_name = "Load Diffusion Model"
    category = "advanced/loaders"
    description = (
        "Loads a standalone diffusion model such as FLUX.1 dev or schnell; its kind is read from the "
        "weights. Pair it with a text encoder loader and a VAE loader."
    )

    class Inputs(NodeInputs):
        unet_name: str = Input(
            description="A model file or diffusers folder from models/diffusion_models (or models/unet).",
            combo_source="diffusion_models",
        )
        weight_dtype: Literal["default", "fp8_e4m3fn", "fp8_e4m3fn_fast", "fp8_e5m2"] = Input(
            "default",
            description="How the layer weights are held in memory: as stored in the file, or squeezed to "
            "8-bit floats to halve memory (they are widened layer by layer for the computation).",
        )

    class Outputs(NodeOutputs):
        MODEL: DiffusionModel = Output(name="MODEL", description="The diffusion model the samplers call.")

    def run(self, ctx: RunContext, inputs: Inputs) -> Outputs:
        """Detect the family, load (or reuse) the weights and hand out a flow-matching MODEL."""
        path = Path(ctx.model_paths.resolve("diffusion_models", inputs.unet_name))
        family = inspect_diffusion_model(path)
        recipe = ComponentRecipe(
            str(path),
            family,
            "unet",
            variant=Variant.DIFFUSION_FILE,
            weight_dtype=inputs.weight_dtype,
            precision=effective_precision(ctx.models, ctx.precision),
        )
        handle = dit_model_handle(ctx.models, recipe)
        handle.load(ctx.models)
        return self.Outputs(MODEL=handle)


NODES = [UNETLoader]
