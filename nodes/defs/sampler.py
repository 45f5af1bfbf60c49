"""KSampler and KSamplerAdvanced: ComfyUI's sampler nodes, plus an optional per-step latent sequence."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from engine import Input, Node, NodeInputs, NodeOutputs, Output, RunContext
from nodes.diffusion.model_handle import DiffusionModel
from nodes.sampling.flow import model_sampling_for
from nodes.sampling.guided import sample_guided
from nodes.sampling.noise import SEED_MAX
from nodes.sampling.samplers import SamplerName
from nodes.sampling.schedulers import SchedulerName, ksampler_sigmas
from nodes.types import Conditioning, Guider, Latent, LatentSequence, Noise, SamplerSpec

SEED_TIP = "Picks the starting noise; the same seed gives the same image on any machine."
STEPS_TIP = "How many times the model is called; more steps take longer and refine more."
CFG_TIP = (
    "Guidance strength: how far each step moves from the negative prompt towards the positive one. "
    "Around 7 is usual; very high values burn colours and detail."
)
SAMPLER_TIP = "The solver that steps from noise to image; solvers differ in speed, sharpness and look."
SCHEDULER_TIP = "How the noise levels are spaced over the steps (where the steps spend their effort)."
STEPS_OUT_TIP = "The latent after every step, in VAE space (only computed when linked)."


@dataclass
class SamplerSettings:
    """Everything common_ksampler needs besides model, conditioning and latent."""

    seed: int
    steps: int
    cfg: float
    sampler_name: str
    scheduler: str
    denoise: float = 1.0
    disable_noise: bool = False
    start_step: int | None = None
    last_step: int | None = None
    force_full_denoise: bool = False


def common_ksampler(
    ctx: RunContext,
    model: DiffusionModel,
    positive: Conditioning,
    negative: Conditioning,
    latent: Latent,
    s: SamplerSettings,
) -> tuple[Latent, LatentSequence | None]:
    """ComfyUI's common_ksampler as a composition: seed noise, a CFG guider, a named sampler, sigmas."""
    ms = model_sampling_for(model)
    sigmas = ksampler_sigmas(
        ms, s.scheduler, s.sampler_name, s.steps, s.denoise, s.start_step, s.last_step, s.force_full_denoise
    )
    guider = Guider(model, "cfg", {"positive": positive, "negative": negative}, cfg=s.cfg)
    result = sample_guided(
        ctx,
        guider,
        SamplerSpec(s.sampler_name),
        sigmas,
        Noise(seed=s.seed, enabled=not s.disable_noise),
        latent,
        keep_steps=ctx.is_linked("steps"),
    )
    return result.latent, result.steps


class KSampler(Node):
    """Denoises a latent with a model, positive and negative conditioning (ComfyUI's KSampler)."""

    class_type = "KSampler"
    display_name = "KSampler"
    category = "sampling"
    description = "Denoises a latent step by step with the model, pulled towards the positive and away from the negative prompt."

    class Inputs(NodeInputs):
        model: DiffusionModel = Input(description="The denoiser, from a checkpoint loader or a LoRA node.")
        seed: int = Input(0, ge=0, le=SEED_MAX, control_after_generate=True, description=SEED_TIP)
        steps: int = Input(20, ge=1, le=10000, description=STEPS_TIP)
        cfg: float = Input(8.0, ge=0.0, le=100.0, step=0.1, round=0.01, description=CFG_TIP)
        sampler_name: SamplerName = Input("euler", description=SAMPLER_TIP)
        scheduler: SchedulerName = Input("simple", description=SCHEDULER_TIP)
        positive: Conditioning = Input(description="What the image should show.")
        negative: Conditioning = Input(description="What the image should avoid.")
        latent_image: Latent = Input(
            description="The starting latent: an empty one, or an encoded image for image-to-image."
        )
        denoise: float = Input(
            1.0,
            ge=0.0,
            le=1.0,
            step=0.01,
            description="Share of the schedule to run: 1 replaces the latent entirely, lower keeps more of "
            "the input image (image-to-image).",
        )

    class Outputs(NodeOutputs):
        LATENT: Latent = Output(name="LATENT", description="The denoised latent.")
        steps: LatentSequence = Output(name="steps", description=STEPS_OUT_TIP)

    def run(self, ctx: RunContext, inputs: Inputs) -> Outputs:
        """Sample with a full schedule (or its tail when denoise < 1)."""
        settings = SamplerSettings(
            inputs.seed, inputs.steps, inputs.cfg, inputs.sampler_name, inputs.scheduler, inputs.denoise
        )
        latent, seq = common_ksampler(
            ctx, inputs.model, inputs.positive, inputs.negative, inputs.latent_image, settings
        )
        return self.Outputs(LATENT=latent, steps=seq if seq is not None else _empty_sequence(latent))


class KSamplerAdvanced(Node):
    """KSampler with control over noise and the step range, for chaining samplers (ComfyUI's node)."""

    class_type = "KSamplerAdvanced"
    display_name = "KSampler (Advanced)"
    category = "sampling"
    description = "Samples a slice of the schedule; chain two with leftover noise to split one run."

    class Inputs(NodeInputs):
        model: DiffusionModel = Input(description="The denoiser, from a checkpoint loader or a LoRA node.")
        add_noise: Literal["enable", "disable"] = Input("enable", description="Add the seed's noise first.")
        noise_seed: int = Input(0, ge=0, le=SEED_MAX, control_after_generate=True, description=SEED_TIP)
        steps: int = Input(20, ge=1, le=10000, description=STEPS_TIP)
        cfg: float = Input(8.0, ge=0.0, le=100.0, step=0.1, round=0.01, description=CFG_TIP)
        sampler_name: SamplerName = Input("euler", description=SAMPLER_TIP)
        scheduler: SchedulerName = Input("simple", description=SCHEDULER_TIP)
        positive: Conditioning = Input(description="What the image should show.")
        negative: Conditioning = Input(description="What the image should avoid.")
        latent_image: Latent = Input(
            description="The starting latent: an empty one, or an encoded image for image-to-image."
        )
        start_at_step: int = Input(0, ge=0, le=10000, description="The first step of the schedule to run.")
        end_at_step: int = Input(10000, ge=0, le=10000, description="The step to stop at.")
        return_with_leftover_noise: Literal["disable", "enable"] = Input(
            "disable", description="enable: stop with the remaining noise, for a following sampler."
        )

    class Outputs(NodeOutputs):
        LATENT: Latent = Output(name="LATENT", description="The denoised latent.")
        steps: LatentSequence = Output(name="steps", description=STEPS_OUT_TIP)

    def run(self, ctx: RunContext, inputs: Inputs) -> Outputs:
        """Sample steps start_at_step..end_at_step of a `steps`-step schedule."""
        settings = SamplerSettings(
            inputs.noise_seed,
            inputs.steps,
            inputs.cfg,
            inputs.sampler_name,
            inputs.scheduler,
            disable_noise=inputs.add_noise == "disable",
            start_step=inputs.start_at_step,
            last_step=inputs.end_at_step,
            force_full_denoise=inputs.return_with_leftover_noise == "disable",
        )
        latent, seq = common_ksampler(
            ctx, inputs.model, inputs.positive, inputs.negative, inputs.latent_image, settings
        )
        return self.Outputs(LATENT=latent, steps=seq if seq is not None else _empty_sequence(latent))


def _empty_sequence(latent: Latent) -> LatentSequence:
    """A zero-step placeholder for the unlinked `steps` output (nothing downstream reads it)."""
    return LatentSequence(steps=latent.samples.new_zeros((0, *latent.samples.shape)))


NODES = [KSampler, KSamplerAdvanced]
