"""Loader nodes: CheckpointLoaderSimple, DiffusersLoader, VAELoader, CLIPSetLastLayer, LoraLoader(ModelOnly)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from engine import Input, Node, NodeInputs, NodeOutputs, Output, RunContext, UserFacingError
from nodes.diffusion import families, sd3
from nodes.diffusion.flux import INPUT_CHANNELS, FluxModel
from nodes.diffusion.loader import (
    component_dtype,
    inspect_vae_file,
    load_checkpoint_into,
    recipe_dtype,
)
from nodes.diffusion.model_handle import ClipHandle, DiffusionModel, VaeHandle
from nodes.diffusion.recipe import ComponentRecipe, LoraPatch, Variant
from nodes.types import FlowSampling


def model_handle(store, recipe: ComponentRecipe, prediction: str, in_channels: int = 4) -> DiffusionModel:
    """The MODEL handle for a UNet recipe, with its family's latent format and ADM kind."""
    if recipe.family in families.DIT_FAMILIES:
        return dit_model_handle(store, recipe)
    spec = families.family_spec(recipe.family)
    return DiffusionModel(
        recipe,
        prediction=prediction,  # type: ignore[arg-type]
        latent_format=families.latent_format(recipe.family),
        compute_dtype=recipe_dtype(store, recipe),
        device=str(store.device),
        adm=spec.adm,
        in_channels=in_channels,
    )


# FLUX dev samples on FLUX's schedule at its default shift; schnell on the plain flow schedule
# (ComfyUI's model types FLUX and FLOW with shift 1, multiplier 1).
FLOW_OF_FAMILY = {
    "flux-dev": FlowSampling("flux", 1.15),
    "flux-fill": FlowSampling("flux", 1.15),
    "flux-control": FlowSampling("flux", 1.15),
    "flux-schnell": FlowSampling("discrete_flow", 1.0, 1.0),
    # ComfyUI's default for SD3 files: discrete flow, shift 3, timesteps sigma * 1000.
    sd3.FAMILY: FlowSampling("discrete_flow", sd3.DEFAULT_SHIFT, sd3.TIMESTEP_MULTIPLIER),
}


def dit_model_handle(store, recipe: ComponentRecipe) -> DiffusionModel:
    """The MODEL handle of a transformer family (SD3, FLUX): 16-channel latents, no UNet ADM inputs."""
    fmt = families.latent_format(recipe.family)
    return DiffusionModel(
        recipe,
        latent_format=fmt,
        compute_dtype=recipe_dtype(store, recipe),
        device=str(store.device),
        in_channels=INPUT_CHANNELS.get(recipe.family, fmt.channels),
        flow=FLOW_OF_FAMILY.get(recipe.family),
    )


def vae_handle(store, recipe: ComponentRecipe) -> VaeHandle:
    """The VAE handle for a recipe."""
    return VaeHandle(
        recipe,
        compute_dtype=component_dtype(store, "vae"),
        device=str(store.device),
        latent_format=families.latent_format(recipe.family),
    )


def checkpoint_outputs(
    store, path: Path, precision: str = "exact"
) -> tuple[DiffusionModel, ClipHandle, VaeHandle]:
    """Load a checkpoint file or diffusers folder into the store and hand out MODEL, CLIP, VAE handles.

    The denoiser is loaded for the run's `precision` (RunContext.precision).
    """
    info, recipes = load_checkpoint_into(store, path, precision)
    vae = recipes.get("vae")
    if vae is None:
        raise UserFacingError(f"{path.name} has no VAE weights; add a VAELoader and use its VAE")
    # An SD3 file or FLUX/SD3 folder without text encoders still hands out a CLIP, which explains the
    # gap when used.
    variant = Variant.DIFFUSERS if path.is_dir() else Variant.CHECKPOINT
    clip_recipe = recipes.get("clip") or ComponentRecipe(str(path), info.family, "clip", variant=variant)
    clip = ClipHandle(clip_recipe, compute_dtype=component_dtype(store, "clip"), device=str(store.device))
    model = model_handle(store, recipes["unet"], info.prediction, info.unet_in_channels)
    return model, clip, vae_handle(store, vae)


class CheckpointLoaderSimple(Node):
    """Loads a single-file checkpoint (or a diffusers pipeline folder) into MODEL, CLIP and VAE."""

    class_type = "CheckpointLoaderSimple"
    display_name = "Load Checkpoint"
    category = "loaders"
    description = (
        "Reads a Stable Diffusion checkpoint (one file, or a diffusers folder under models/checkpoints), "
        "recognises whether it is SD1.x, SD2.x, SDXL, FLUX.1 or SD3.5, and splits it into denoiser, text "
        "encoder and VAE."
    )

    class Inputs(NodeInputs):
        ckpt_name: str = Input(
            description="A file or diffusers folder from models/checkpoints.", combo_source="checkpoints"
        )

    class Outputs(NodeOutputs):
        MODEL: DiffusionModel = Output(
            name="MODEL", description="The denoiser (UNet) that the samplers call at every step."
        )
        CLIP: ClipHandle = Output(
            name="CLIP", description="The text encoder(s) that turn prompts into conditioning."
        )
        VAE: VaeHandle = Output(name="VAE", description="The autoencoder between pixels and latents.")

    def run(self, ctx: RunContext, inputs: Inputs) -> Outputs:
        """Read the file once (or the folder's parts) and hand out store-backed handles."""
        path = Path(ctx.model_paths.resolve("checkpoints", inputs.ckpt_name))
        model, clip, vae = checkpoint_outputs(ctx.models, path, ctx.precision)
        return self.Outputs(MODEL=model, CLIP=clip, VAE=vae)


class DiffusersLoader(Node):
    """Loads a diffusers pipeline folder from models/diffusers into MODEL, CLIP and VAE."""

    class_type = "DiffusersLoader"
    category = "advanced/loaders/deprecated"
    description = "Loads a diffusers-format model folder (model_index.json, unet/, vae/, text_encoder/...)."

    class Inputs(NodeInputs):
        model_path: str = Input(description="The diffusers folder to load.", combo_source="diffusers")

    class Outputs(CheckpointLoaderSimple.Outputs):
        """The same MODEL, CLIP and VAE outputs as the single-file loader."""

    def run(self, ctx: RunContext, inputs: Inputs) -> Outputs:
        """Load the folder's parts and hand out store-backed handles."""
        path = Path(ctx.model_paths.resolve("diffusers", inputs.model_path))
        model, clip, vae = checkpoint_outputs(ctx.models, path, ctx.precision)
        return self.Outputs(MODEL=model, CLIP=clip, VAE=vae)


class VAELoader(Node):
    """Loads a standalone VAE file (or diffusers VAE folder) from models/vae."""

    class_type = "VAELoader"
    display_name = "Load VAE"
    category = "loaders"
    description = (
        "Loads a standalone VAE (AutoencoderKL) file, in the original or the diffusers layout, or a "
        "diffusers vae/ folder."
    )

    class Inputs(NodeInputs):
        vae_name: str = Input(
            description="The VAE file (or diffusers vae/ folder) to load.", combo_source="vae"
        )

    class Outputs(NodeOutputs):
        VAE: VaeHandle = Output(name="VAE", description="The loaded VAE.")

    def run(self, ctx: RunContext, inputs: Inputs) -> Outputs:
        """Load (or reuse) the VAE; its layout is checked from the weights (see inspect_vae_file)."""
        path = Path(ctx.model_paths.resolve("vae", inputs.vae_name))
        family = inspect_vae_file(path)
        recipe = ComponentRecipe(str(path), family, "vae", variant=Variant.VAE_FILE)
        handle = vae_handle(ctx.models, recipe)
        handle.load(ctx.models)
        return self.Outputs(VAE=handle)


class CLIPSetLastLayer(Node):
    """Chooses which CLIP layer's output conditions the model (ComfyUI's clip skip)."""

    class_type = "CLIPSetLastLayer"
    category = "conditioning"
    description = "-1 uses the last layer, -2 the penultimate (clip skip 2), and so on."

    class Inputs(NodeInputs):
        clip: ClipHandle = Input(description="The CLIP model.")
        stop_at_clip_layer: int = Input(
            -1, description="Last CLIP layer to use (-1 = last).", ge=-24, le=-1, step=1
        )

    class Outputs(NodeOutputs):
        CLIP: ClipHandle = Output(name="CLIP", description="The CLIP model with the layer set.")

    def run(self, ctx: RunContext, inputs: Inputs) -> Outputs:
        """Return a handle with the layer set; no weights are touched."""
        return self.Outputs(CLIP=replace(inputs.clip, layer=inputs.stop_at_clip_layer))


def _lora_path(ctx: RunContext, name: str) -> str:
    return str(Path(ctx.model_paths.resolve("loras", name)))


def _patched_model(ctx: RunContext, model: DiffusionModel) -> DiffusionModel:
    """Load a LoRA-patched model; a FLUX model whose img_in the LoRA widened (BFL control LoRAs) now
    reads the control image's latent too, so its handle says so."""
    module = model.load(ctx.models)
    if isinstance(module, FluxModel) and module.in_channels != model.in_channels:
        return replace(model, in_channels=module.in_channels)
    return model


class LoraLoader(Node):
    """Applies a LoRA to MODEL and CLIP."""

    class_type = "LoraLoader"
    display_name = "Load LoRA"
    category = "loaders"
    description = "Patches the model and CLIP with a LoRA; the cached base model stays unchanged."

    class Inputs(NodeInputs):
        model: DiffusionModel = Input(
            description="The denoiser to patch; the original stays unpatched for other nodes."
        )
        clip: ClipHandle = Input(
            description="The text encoder to patch; the original stays unpatched for other nodes."
        )
        lora_name: str = Input(description="A LoRA file from models/loras.", combo_source="loras")
        strength_model: float = Input(
            1.0,
            description="Scale of the LoRA on the denoiser; 0 leaves it as is, negative values invert it.",
            ge=-100.0,
            le=100.0,
            step=0.01,
        )
        strength_clip: float = Input(
            1.0,
            description="Scale of the LoRA on the text encoder; 0 leaves it as is, negative values invert it.",
            ge=-100.0,
            le=100.0,
            step=0.01,
        )

    class Outputs(NodeOutputs):
        MODEL: DiffusionModel = Output(name="MODEL", description="The denoiser with the LoRA applied.")
        CLIP: ClipHandle = Output(name="CLIP", description="The text encoder with the LoRA applied.")

    def run(self, ctx: RunContext, inputs: Inputs) -> Outputs:
        """Add the patch to both recipes and load the patched copies."""
        path = _lora_path(ctx, inputs.lora_name)
        model = replace(
            inputs.model, recipe=inputs.model.recipe.with_patch(LoraPatch(path, inputs.strength_model))
        )
        clip = replace(
            inputs.clip, recipe=inputs.clip.recipe.with_patch(LoraPatch(path, inputs.strength_clip))
        )
        model = _patched_model(ctx, model)
        clip.load(ctx.models)
        return self.Outputs(MODEL=model, CLIP=clip)


class LoraLoaderModelOnly(Node):
    """Applies a LoRA to MODEL only."""

    class_type = "LoraLoaderModelOnly"
    category = "loaders"
    description = "Patches the diffusion model with a LoRA; the cached base model stays unchanged."

    class Inputs(NodeInputs):
        model: DiffusionModel = Input(
            description="The denoiser to patch; the original stays unpatched for other nodes."
        )
        lora_name: str = Input(description="A LoRA file from models/loras.", combo_source="loras")
        strength_model: float = Input(
            1.0,
            description="Scale of the LoRA on the denoiser; 0 leaves it as is, negative values invert it.",
            ge=-100.0,
            le=100.0,
            step=0.01,
        )

    class Outputs(NodeOutputs):
        MODEL: DiffusionModel = Output(name="MODEL", description="The denoiser with the LoRA applied.")

    def run(self, ctx: RunContext, inputs: Inputs) -> Outputs:
        """Add the patch to the model recipe and load the patched copy."""
        path = _lora_path(ctx, inputs.lora_name)
        model = replace(
            inputs.model, recipe=inputs.model.recipe.with_patch(LoraPatch(path, inputs.strength_model))
        )
        return self.Outputs(MODEL=_patched_model(ctx, model))


NODES = [
    CheckpointLoaderSimple,
    DiffusersLoader,
    VAELoader,
    CLIPSetLastLayer,
    LoraLoader,
    LoraLoaderModelOnly,
]
