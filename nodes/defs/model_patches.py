"""Model patch nodes: FreeU, FreeU_V2, PerturbedAttentionGuidance, SelfAttentionGuidance, RescaleCFG,
EasyCache.

Each returns a new MODEL handle with one more patch value (see nodes/diffusion/unet_patches.py); no
weights are loaded or touched here, so the node is instant and the unpatched model stays in use
elsewhere.
"""

from __future__ import annotations

import logging

from engine import Input, Node, NodeInputs, NodeOutputs, Output, RunContext
from nodes.diffusion.easycache import EasyCachePatch
from nodes.diffusion.model_handle import DiffusionModel
from nodes.diffusion.model_patches import (
    FreeUPatch,
    PerturbedAttentionPatch,
    RescaleCfgPatch,
    SelfAttentionGuidancePatch,
)
from nodes.diffusion.sd3 import FAMILY as SD3_FAMILY

log = logging.getLogger(__name__)
_MODEL_IN = "The denoiser to patch; the original stays unpatched for other nodes."


class _PatchedModel(NodeOutputs):
    MODEL: DiffusionModel = Output(name="MODEL", description="The denoiser with the patch added on top.")


class _FreeUInputs(NodeInputs):
    """Shared by both FreeU versions; the defaults differ per node."""

    model: DiffusionModel = Input(description=_MODEL_IN)
    b1: float = Input(
        1.3, description="Boost of the deepest decoder stage's backbone features.", ge=0.0, le=10.0, step=0.01
    )
    b2: float = Input(
        1.4, description="Boost of the second decoder stage's backbone features.", ge=0.0, le=10.0, step=0.01
    )
    s1: float = Input(
        0.9,
        description="Damping of the low frequencies of the deepest stage's skip features.",
        ge=0.0,
        le=10.0,
        step=0.01,
    )
    s2: float = Input(
        0.2,
        description="Damping of the low frequencies of the second stage's skip features.",
        ge=0.0,
        le=10.0,
        step=0.01,
    )


class FreeU(Node):
    """FreeU: reweights decoder backbone and skip features for more detail, no training needed."""

    class_type = "FreeU"
    category = "model_patches/unet"
    description = (
        "Strengthens the UNet decoder's backbone features and damps its skip features' low frequencies."
    )

    class Inputs(_FreeUInputs):
        b1: float = Input(
            1.1,
            description="Boost of the deepest decoder stage's backbone features.",
            ge=0.0,
            le=10.0,
            step=0.01,
        )
        b2: float = Input(
            1.2,
            description="Boost of the second decoder stage's backbone features.",
            ge=0.0,
            le=10.0,
            step=0.01,
        )

    Outputs = _PatchedModel

    def run(self, ctx: RunContext, inputs: Inputs) -> _PatchedModel:
        """Add the FreeU (version 1) patch."""
        patch = FreeUPatch(inputs.b1, inputs.b2, inputs.s1, inputs.s2, version=1)
        return _PatchedModel(MODEL=inputs.model.with_model_patch(patch))


class FreeU_V2(Node):  # noqa: N801 - ComfyUI's node id
    """FreeU version 2: the backbone boost follows each pixel's mean activation."""

    class_type = "FreeU_V2"
    category = "model_patches/unet"
    description = "FreeU with the backbone boost weighted per pixel by its normalised mean activation."

    Inputs = _FreeUInputs
    Outputs = _PatchedModel

    def run(self, ctx: RunContext, inputs: _FreeUInputs) -> _PatchedModel:
        """Add the FreeU (version 2) patch."""
        patch = FreeUPatch(inputs.b1, inputs.b2, inputs.s1, inputs.s2, version=2)
        return _PatchedModel(MODEL=inputs.model.with_model_patch(patch))


class PerturbedAttentionGuidance(Node):
    """Perturbed-Attention Guidance: steers away from a prediction made with self-attention disabled."""

    class_type = "PerturbedAttentionGuidance"
    category = "model_patches/unet"
    description = (
        "Adds guidance away from the positive prediction made with the middle block's self-attention "
        "reduced to identity; costs one more model call per step."
    )

    class Inputs(NodeInputs):
        model: DiffusionModel = Input(description=_MODEL_IN)
        scale: float = Input(
            3.0,
            description="Strength of the perturbed-attention guidance (0 turns it off).",
            ge=0.0,
            le=100.0,
            step=0.01,
            round=0.01,
        )

    Outputs = _PatchedModel

    def run(self, ctx: RunContext, inputs: Inputs) -> _PatchedModel:
        """Add the PAG patch."""
        return _PatchedModel(MODEL=inputs.model.with_model_patch(PerturbedAttentionPatch(inputs.scale)))


class SelfAttentionGuidance(Node):
    """Self-Attention Guidance: steers away from a blur of the regions the model attends to most."""

    class_type = "SelfAttentionGuidance"
    display_name = "Self-Attention Guidance"
    category = "_for_testing"
    description = (
        "Adds guidance away from the negative prediction blurred where the middle block's self-attention "
        "concentrates; costs one more model call per step and always evaluates the negative."
    )

    class Inputs(NodeInputs):
        model: DiffusionModel = Input(description=_MODEL_IN)
        scale: float = Input(
            0.5, description="Strength of the self-attention guidance.", ge=-2.0, le=5.0, step=0.01
        )
        blur_sigma: float = Input(
            2.0,
            description="Standard deviation of the Gaussian blur, in latent pixels.",
            ge=0.0,
            le=10.0,
            step=0.1,
        )

    Outputs = _PatchedModel

    def run(self, ctx: RunContext, inputs: Inputs) -> _PatchedModel:
        """Add the SAG patch."""
        patch = SelfAttentionGuidancePatch(inputs.scale, inputs.blur_sigma)
        return _PatchedModel(MODEL=inputs.model.with_model_patch(patch))


class RescaleCFG(Node):
    """RescaleCFG: tames the over-saturation of high cfg by rescaling the guided prediction."""

    class_type = "RescaleCFG"
    category = "advanced/model"
    description = "Rescales the guided prediction toward the positive prediction's spread (useful for v-prediction models)."

    class Inputs(NodeInputs):
        model: DiffusionModel = Input(description=_MODEL_IN)
        multiplier: float = Input(
            0.7,
            description="How much of the rescaled guidance to use (0 = plain cfg).",
            ge=0.0,
            le=1.0,
            step=0.01,
        )

    Outputs = _PatchedModel

    def run(self, ctx: RunContext, inputs: Inputs) -> _PatchedModel:
        """Add the RescaleCFG patch."""
        return _PatchedModel(MODEL=inputs.model.with_model_patch(RescaleCfgPatch(inputs.multiplier)))


class EasyCache(Node):
    """Skips model calls whose result the recent change rate predicts, reusing the last one's change."""

    class_type = "EasyCache"
    display_name = "EasyCache"
    category = "advanced/debug/model"
    description = (
        "Speeds up sampling by reusing the last computed change of the latent on steps where the model's "
        "output is predicted to move little; costs some detail. SD3 models are left as they are."
    )

    class Inputs(NodeInputs):
        model: DiffusionModel = Input(description=_MODEL_IN)
        reuse_threshold: float = Input(
            0.2,
            description="How much predicted change may build up before the model is run again.",
            ge=0.0,
            le=3.0,
            step=0.01,
        )
        start_percent: float = Input(
            0.15, description="Point in sampling where reuse may begin.", ge=0.0, le=1.0, step=0.01
        )
        end_percent: float = Input(
            0.95,
            description="Point in sampling after which every step runs the model.",
            ge=0.0,
            le=1.0,
            step=0.01,
        )
        verbose: bool = Input(False, description="Log every reuse decision.")

    Outputs = _PatchedModel

    def run(self, ctx: RunContext, inputs: Inputs) -> _PatchedModel:
        """Add the EasyCache patch (SD3's model call has no hook for it in ComfyUI either)."""
        if inputs.model.family == SD3_FAMILY:
            log.info("EasyCache: SD3 model calls are not cached; the model is returned unchanged")
            return _PatchedModel(MODEL=inputs.model)
        patch = EasyCachePatch(
            inputs.reuse_threshold, inputs.start_percent, inputs.end_percent, inputs.verbose
        )
        return _PatchedModel(MODEL=inputs.model.with_model_patch(patch))


NODES = (FreeU, FreeU_V2, PerturbedAttentionGuidance, SelfAttentionGuidance, RescaleCFG, EasyCache)
