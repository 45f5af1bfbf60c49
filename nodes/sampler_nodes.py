"""KSampler and KSamplerAdvanced: ComfyUI's sampler nodes, plus an optional per-step latent sequence."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch

from engine import Input, Node, NodeInputs, NodeOutputs, Output, RunContext
from nodes.diffusion.model_handle import DiffusionModel
from nodes.previews import run_previewer
from nodes.sampling.cfg import CfgDenoiser
from nodes.sampling.model_sampling import DiscreteModelSampling
from nodes.sampling.noise import SEED_MAX, prepare_noise
from nodes.sampling.samplers import UNCOND_AT_CFG_1, SampleRequest, SamplerName, sample
from nodes.sampling.schedulers import SchedulerName, ksampler_sigmas
from nodes.types import Conditioning, Latent, LatentFormat, LatentSequence

SEED_TIP = "The random seed used for creating the noise."
STEPS_TIP = "The number of steps used in the denoising process."
CFG_TIP = (
    "The Classifier-Free Guidance scale balances creativity and adherence to the prompt. Higher values "
    "result in images more closely matching the prompt however too high values will negatively impact quality."
)
SAMPLER_TIP = (
    "The algorithm used when sampling, this can affect the quality, speed, and style of the generated output."
)
SCHEDULER_TIP = "The scheduler controls how noise is gradually removed to form the image."
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


class StepRecorder:
    """The per-step callback: progress, x0 preview and (when linked) the latent after each step."""

    def __init__(self, ctx: RunContext, total: int, latent_format: LatentFormat, keep_steps: bool):
        self.ctx, self.total, self.latent_format = ctx, total, latent_format
        self.keep_steps = keep_steps
        self.steps: list[torch.Tensor] = []
        self.previewer: Callable[[torch.Tensor], Any] | None = None

    def __call__(self, i: int, x0: torch.Tensor, x: torch.Tensor) -> None:
        if self.keep_steps and i > 0:
            self.steps.append(self.latent_format.process_out(x.float()).cpu())
        if self.ctx.latents_requested and i > 0:
            # x is the latent entering step i, so the one after step i-1 (the final one comes from sample()).
            self.ctx.step_latent(i - 1, self.total, self.latent_format.process_out(x.float()).cpu())
        if self.ctx.previews_enabled:
            if self.previewer is None:
                # Built on the first step only: TAESD weights load once per run, never when unused.
                self.previewer = run_previewer(self.ctx, self.latent_format)
            self.ctx.preview(self.previewer(x0.detach()))
        self.ctx.progress(i + 1, self.total)

    def sequence(self, final: torch.Tensor) -> LatentSequence:
        """All recorded step latents plus the final one, [S, B, C, h, w]."""
        return LatentSequence(
            steps=torch.stack([*self.steps, final.float().cpu()]), latent_format=self.latent_format
        )


def common_ksampler(
    ctx: RunContext,
    model: DiffusionModel,
    positive: Conditioning,
    negative: Conditioning,
    latent: Latent,
    s: SamplerSettings,
) -> tuple[Latent, LatentSequence | None]:
    """ComfyUI's common_ksampler: noise, sigmas, CFG denoiser, sampler; returns the new latent."""
    ms = DiscreteModelSampling.create(model.prediction)
    samples = latent.samples
    if s.disable_noise:
        noise = torch.zeros(samples.shape, dtype=samples.dtype, layout=samples.layout)
    else:
        noise = prepare_noise(samples, s.seed, latent.batch_index)
    sigmas = ksampler_sigmas(
        ms, s.scheduler, s.sampler_name, s.steps, s.denoise, s.start_step, s.last_step, s.force_full_denoise
    )
    keep_steps = ctx.is_linked("steps")
    recorder = StepRecorder(ctx, max(len(sigmas) - 1, 0), model.latent_format, keep_steps)

    def unet(x_in, timesteps, embeds, pooled, extras):
        return model.forward(ctx.models, x_in, timesteps, embeds, pooled, extras)

    uncond_at_cfg_1 = s.sampler_name in UNCOND_AT_CFG_1
    denoiser = CfgDenoiser(
        unet, ms, positive.entries, negative.entries, s.cfg, uncond_at_cfg_1=uncond_at_cfg_1
    )
    req = SampleRequest(samples, noise, sigmas, s.sampler_name, s.seed, latent.noise_mask)
    with torch.inference_mode():
        out = sample(denoiser, ms, model.latent_format, req, model.device, recorder).cpu()
    if recorder.total:
        ctx.step_latent(recorder.total - 1, recorder.total, out.float())
    result = Latent(samples=out, batch_index=latent.batch_index, noise_mask=latent.noise_mask)
    return result, recorder.sequence(out) if keep_steps else None


class KSampler(Node):
    """Denoises a latent with a model, positive and negative conditioning (ComfyUI's KSampler)."""

    class_type = "KSampler"
    display_name = "KSampler"
    category = "sampling"
    description = "Uses the provided model, positive and negative conditioning to denoise the latent image."

    class Inputs(NodeInputs):
        model: DiffusionModel = Input(description="The model used for denoising the input latent.")
        seed: int = Input(0, ge=0, le=SEED_MAX, control_after_generate=True, description=SEED_TIP)
        steps: int = Input(20, ge=1, le=10000, description=STEPS_TIP)
        cfg: float = Input(8.0, ge=0.0, le=100.0, step=0.1, round=0.01, description=CFG_TIP)
        sampler_name: SamplerName = Input("euler", description=SAMPLER_TIP)
        scheduler: SchedulerName = Input("simple", description=SCHEDULER_TIP)
        positive: Conditioning = Input(
            description="The conditioning describing the attributes you want to include in the image."
        )
        negative: Conditioning = Input(
            description="The conditioning describing the attributes you want to exclude from the image."
        )
        latent_image: Latent = Input(description="The latent image to denoise.")
        denoise: float = Input(
            1.0,
            ge=0.0,
            le=1.0,
            step=0.01,
            description="The amount of denoising applied, lower values will "
            "maintain the structure of the initial image allowing for image to image sampling.",
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
        model: DiffusionModel = Input(description="The model used for denoising the input latent.")
        add_noise: Literal["enable", "disable"] = Input("enable", description="Add the seed's noise first.")
        noise_seed: int = Input(0, ge=0, le=SEED_MAX, control_after_generate=True, description=SEED_TIP)
        steps: int = Input(20, ge=1, le=10000, description=STEPS_TIP)
        cfg: float = Input(8.0, ge=0.0, le=100.0, step=0.1, round=0.01, description=CFG_TIP)
        sampler_name: SamplerName = Input("euler", description=SAMPLER_TIP)
        scheduler: SchedulerName = Input("simple", description=SCHEDULER_TIP)
        positive: Conditioning = Input(description="The conditioning to include.")
        negative: Conditioning = Input(description="The conditioning to exclude.")
        latent_image: Latent = Input(description="The latent image to denoise.")
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
