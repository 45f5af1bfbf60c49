"""Model merging nodes: ModelMergeSimple (a lazy weight blend) and CheckpointSave (single-file LDM layout)."""

from __future__ import annotations

import logging
from dataclasses import replace

from safetensors.torch import save

from engine import Input, Node, NodeInputs, NodeOutputs, Output, RunContext, UserFacingError, metadata_items
from nodes.diffusion.checkpoint_save import checkpoint_metadata, single_file_state
from nodes.diffusion.model_handle import ClipHandle, DiffusionModel, VaeHandle
from nodes.diffusion.recipe import MergePatch
from nodes.media.save_paths import PREFIX_TIP, OutputFileNode, save_target

CHECKPOINT_SUFFIX = ".safetensors"
log = logging.getLogger(__name__)


class MergeMismatchError(UserFacingError):
    """Two models of different families or input layouts given to a merge."""

    code = "merge_mismatch"


class ModelMergeSimple(Node):
    """Blends the second model's weights into the first one's."""

    class_type = "ModelMergeSimple"
    category = "advanced/model_merging"
    description = (
        "Mixes two denoisers of the same family weight by weight; the blend is computed when the merged "
        "model is first used and cached like a loaded model."
    )

    class Inputs(NodeInputs):
        model1: DiffusionModel = Input(description="The base denoiser; its model patches are kept.")
        model2: DiffusionModel = Input(description="The denoiser blended in (its LoRAs included).")
        ratio: float = Input(
            1.0,
            description="Share of model1 in each weight: 1 keeps model1, 0 gives model2's weights.",
            ge=0.0,
            le=1.0,
            step=0.01,
        )

    class Outputs(NodeOutputs):
        MODEL: DiffusionModel = Output(name="MODEL", description="The merged denoiser.")

    def run(self, ctx: RunContext, inputs: Inputs) -> Outputs:
        """Add a merge patch to model1's recipe; no weights are read here."""
        a, b = inputs.model1, inputs.model2
        if (a.family, a.in_channels) != (b.family, b.in_channels):
            raise MergeMismatchError(
                f"model2 is a {b.family} model with {b.in_channels} input channels, model1 a {a.family} "
                f"model with {a.in_channels}; merge models of one family"
            )
        # ratio is model1's share, so model2 enters with 1 - ratio (ComfyUI's convention).
        patch = MergePatch(b.recipe, inputs.ratio)
        return self.Outputs(MODEL=replace(a, recipe=a.recipe.with_patch(patch)))


class CheckpointSave(OutputFileNode):
    """Writes MODEL, CLIP and VAE as one single-file checkpoint (original LDM key layout)."""

    class_type = "CheckpointSave"
    display_name = "Save Checkpoint"
    category = "advanced/model_merging"
    description = (
        "Saves the (merged, LoRA-patched) model, text encoder and VAE as one .safetensors checkpoint that "
        "CheckpointLoaderSimple reads back; the prompt and workflow go into its metadata."
    )

    class Inputs(NodeInputs):
        model: DiffusionModel = Input(description="The denoiser to save, with its weight patches baked in.")
        clip: ClipHandle = Input(description="The text encoder(s) to save.")
        vae: VaeHandle = Input(description="The VAE to save.")
        filename_prefix: str = Input("checkpoints/ComfyUI", description=PREFIX_TIP)

    class Outputs(NodeOutputs):
        pass

    def run(self, ctx: RunContext, inputs: Inputs) -> Outputs:
        """Write `{prefix}_{counter:05}_.safetensors` under the output folder."""
        if inputs.model.patches:
            # Hooks such as FreeU or PAG are run-time functions, not weights; ComfyUI drops them too.
            log.info(
                "CheckpointSave: %d model patches are run-time hooks, not saved", len(inputs.model.patches)
            )
        store = ctx.models
        state = single_file_state(
            (inputs.model.recipe, inputs.model.load(store)),
            (inputs.clip.recipe, inputs.clip.stack(store)),
            (inputs.vae.recipe, inputs.vae.autoencoder(store)),
        )
        target = save_target(ctx.output_dir, inputs.filename_prefix, 0, 0)
        items = metadata_items(ctx.prompt, ctx.extra_pnginfo)
        if ctx.prompt is None:
            items = [("prompt", ""), *items]
        metadata, extra = checkpoint_metadata(
            inputs.model.family, inputs.model.prediction, f"{target.base} {target.counter}", items
        )
        blob = save({**state, **extra}, metadata=metadata)
        target.write(CHECKPOINT_SUFFIX, 0, lambda handle: handle.write(blob))
        return self.Outputs()


NODES = (ModelMergeSimple, CheckpointSave)
