"""FLUX nodes: distilled guidance on conditioning, the resolution-dependent sampling shift, SD3/FLUX latents."""

from __future__ import annotations

from dataclasses import replace

import torch

from engine import Input, Node, NodeInputs, NodeOutputs, Output, RunContext
from nodes.diffusion.model_handle import DiffusionModel
from nodes.sampling.flow import flux_shift_for_size
from nodes.types import CondEntry, Conditioning, FlowSampling, Latent

MAX_RESOLUTION = 16384
# Key of CondEntry.extras holding FLUX's distilled guidance (None: the guidance embedding is skipped).
GUIDANCE_KEY = "guidance"
FLUX_LATENT_CHANNELS = 16


def _set_extra(cond: Conditioning, key: str, value: object) -> Conditioning:
    """Every entry with one extras key set (the others kept)."""
    entries: tuple[CondEntry, ...] = tuple(replace(e, extras={**e.extras, key: value}) for e in cond.entries)
    return Conditioning(entries=entries)


class _CondOut(NodeOutputs):
    CONDITIONING: Conditioning = Output(
        name="CONDITIONING", description="The conditioning with the new guidance."
    )


class FluxGuidance(Node):
    """Sets the guidance strength a guidance-distilled model (FLUX dev) is told to imitate."""

    class_type = "FluxGuidance"
    category = "advanced/conditioning/flux"
    description = (
        "FLUX dev was trained to imitate classifier-free guidance from a single pass: this sets the "
        "strength it imitates (about 3.5 is typical). Leave the sampler's cfg at 1 with it."
    )

    class Inputs(NodeInputs):
        conditioning: Conditioning = Input(description="The conditioning to carry the guidance value.")
        guidance: float = Input(
            3.5,
            ge=0.0,
            le=100.0,
            step=0.1,
            description="Imitated guidance strength; higher follows the prompt more.",
        )

    Outputs = _CondOut

    def run(self, ctx: RunContext, inputs: Inputs) -> _CondOut:
        """Store the value on every entry; the model reads it at each step."""
        return _CondOut(CONDITIONING=_set_extra(inputs.conditioning, GUIDANCE_KEY, inputs.guidance))


class FluxDisableGuidance(Node):
    """Turns the guidance embedding of FLUX-like models off for this conditioning."""

    class_type = "FluxDisableGuidance"
    category = "advanced/conditioning/flux"
    description = "Runs a FLUX-like model without its guidance input at all (for models that do not use it)."

    class Inputs(NodeInputs):
        conditioning: Conditioning = Input(description="The conditioning whose guidance input is dropped.")

    Outputs = _CondOut

    def run(self, ctx: RunContext, inputs: Inputs) -> _CondOut:
        """Mark the guidance as absent (distinct from a guidance of 0)."""
        return _CondOut(CONDITIONING=_set_extra(inputs.conditioning, GUIDANCE_KEY, None))


class ModelSamplingFlux(Node):
    """Makes a model sample on FLUX's schedule shifted for an image size."""

    class_type = "ModelSamplingFlux"
    category = "advanced/model"
    description = (
        "Shifts the noise schedule for the image size: bigger images spend more steps at high noise. "
        "The shift grows linearly from base_shift at 256 tokens to max_shift at 4096 (1024x1024)."
    )

    class Inputs(NodeInputs):
        model: DiffusionModel = Input(description="The model to resample.")
        max_shift: float = Input(1.15, ge=0.0, le=100.0, step=0.01, description="Shift at 1024x1024 pixels.")
        base_shift: float = Input(0.5, ge=0.0, le=100.0, step=0.01, description="Shift at 256x256 pixels.")
        width: int = Input(
            1024, ge=16, le=MAX_RESOLUTION, step=8, description="Image width the shift is for."
        )
        height: int = Input(
            1024, ge=16, le=MAX_RESOLUTION, step=8, description="Image height the shift is for."
        )

    class Outputs(NodeOutputs):
        MODEL: DiffusionModel = Output(
            name="MODEL", description="The same model on the shifted FLUX schedule."
        )

    def run(self, ctx: RunContext, inputs: Inputs) -> Outputs:
        """A handle with FLUX's flow schedule at the computed shift (weights are shared)."""
        shift = flux_shift_for_size(inputs.width, inputs.height, inputs.base_shift, inputs.max_shift)
        return self.Outputs(MODEL=replace(inputs.model, flow=FlowSampling("flux", shift)))


class EmptySD3LatentImage(Node):
    """A batch of all-zero 16-channel latents (SD3, FLUX)."""

    class_type = "EmptySD3LatentImage"
    category = "latent/sd3"
    description = (
        "Starts text-to-image for 16-channel models (SD3, FLUX): an all-zero latent of the given size."
    )

    class Inputs(NodeInputs):
        width: int = Input(
            1024,
            description="Image width in pixels; the latent is 8 times smaller.",
            ge=16,
            le=MAX_RESOLUTION,
            step=16,
        )
        height: int = Input(
            1024,
            description="Image height in pixels; the latent is 8 times smaller.",
            ge=16,
            le=MAX_RESOLUTION,
            step=16,
        )
        batch_size: int = Input(1, description="How many images to make at once.", ge=1, le=4096)

    class Outputs(NodeOutputs):
        LATENT: Latent = Output(name="LATENT", description="Zeros shaped for the requested size and batch.")

    def run(self, ctx: RunContext, inputs: Inputs) -> Outputs:
        """Zeros [B, 16, H/8, W/8] float32."""
        shape = (inputs.batch_size, FLUX_LATENT_CHANNELS, inputs.height // 8, inputs.width // 8)
        return self.Outputs(LATENT=Latent(samples=torch.zeros(shape, dtype=torch.float32)))


NODES = [FluxGuidance, FluxDisableGuidance, ModelSamplingFlux, EmptySD3LatentImage]
