"""The custom-sampling node family: pick a sampler, a noise source and a guider, then sample with sigmas.

SamplerCustomAdvanced takes all four parts; SamplerCustom builds the noise and a CFG guider itself.
Both run the same loop as KSampler (nodes.sampling.guided), so equal parts give equal latents.
"""

from __future__ import annotations

from typing import Literal

from engine import Input, Node, NodeInputs, NodeOutputs, Output, RunContext
from nodes.diffusion.model_handle import DiffusionModel
from nodes.sampling.guided import SamplingResult, sample_guided
from nodes.sampling.noise import SEED_MAX
from nodes.types import Conditioning, GuidanceKind, Guider, Latent, Noise, SamplerSpec, Sigmas

CUSTOM = "sampling/custom_sampling"
SEED_TIP = "The seed of the starting noise and of any noise the sampler adds along the way."
CFG_TIP = "How strongly the positive prompt is pushed away from the negative one (1 turns guidance off)."


class _SampledOut(NodeOutputs):
    output: Latent = Output(name="output", description="The sampled latent.")
    denoised_output: Latent = Output(
        name="denoised_output", description="The model's clean-image estimate at the last step."
    )


def _sampled(result: SamplingResult) -> _SampledOut:
    return _SampledOut(output=result.latent, denoised_output=result.denoised)


class SamplerCustom(Node):
    """Samples with a chosen SAMPLER and SIGMAS under classifier-free guidance."""

    class_type = "SamplerCustom"
    category = CUSTOM
    description = "Runs a sampler along a given schedule with CFG, returning the result and its x0."

    class Inputs(NodeInputs):
        model: DiffusionModel = Input(description="The denoising model.")
        add_noise: bool = Input(True, description="Start from the seed's noise (off: the latent as it is).")
        noise_seed: int = Input(0, ge=0, le=SEED_MAX, control_after_generate=True, description=SEED_TIP)
        cfg: float = Input(8.0, ge=0.0, le=100.0, step=0.1, round=0.01, description=CFG_TIP)
        positive: Conditioning = Input(description="What the image should show.")
        negative: Conditioning = Input(description="What the image should avoid.")
        sampler: SamplerSpec = Input(description="The sampling algorithm and its options.")
        sigmas: Sigmas = Input(description="The noise levels to step through.")
        latent_image: Latent = Input(description="The latent to start from.")

    Outputs = _SampledOut

    def run(self, ctx: RunContext, inputs: Inputs) -> _SampledOut:
        """Seed noise (or none), a CFG guider, then the shared sampling loop."""
        conds = {"positive": inputs.positive, "negative": inputs.negative}
        guider = Guider(inputs.model, "cfg", conds, cfg=inputs.cfg)
        noise = Noise(seed=inputs.noise_seed, enabled=inputs.add_noise)
        return _sampled(
            sample_guided(ctx, guider, inputs.sampler, inputs.sigmas.sigmas, noise, inputs.latent_image)
        )


class SamplerCustomAdvanced(Node):
    """Samples from four parts: NOISE, GUIDER, SAMPLER and SIGMAS."""

    class_type = "SamplerCustomAdvanced"
    category = CUSTOM
    description = "Runs a sampler from separate noise, guider, sampler and schedule parts."

    class Inputs(NodeInputs):
        noise: Noise = Input(description="Where the starting noise comes from.")
        guider: Guider = Input(description="The model and how its predictions are guided.")
        sampler: SamplerSpec = Input(description="The sampling algorithm and its options.")
        sigmas: Sigmas = Input(description="The noise levels to step through.")
        latent_image: Latent = Input(description="The latent to start from.")

    Outputs = _SampledOut

    def run(self, ctx: RunContext, inputs: Inputs) -> _SampledOut:
        """The shared sampling loop on the given parts."""
        return _sampled(
            sample_guided(
                ctx, inputs.guider, inputs.sampler, inputs.sigmas.sigmas, inputs.noise, inputs.latent_image
            )
        )


class _NoiseOut(NodeOutputs):
    NOISE: Noise = Output(name="NOISE", description="The noise source.")


class RandomNoise(Node):
    """Seeded starting noise."""

    class_type = "RandomNoise"
    category = "sampling/custom_sampling/noise"
    description = "Gaussian starting noise drawn on the CPU from a seed (the same on every machine)."

    class Inputs(NodeInputs):
        noise_seed: int = Input(0, ge=0, le=SEED_MAX, control_after_generate=True, description=SEED_TIP)

    Outputs = _NoiseOut

    def run(self, ctx: RunContext, inputs: Inputs) -> _NoiseOut:
        """A seeded noise source."""
        return _NoiseOut(NOISE=Noise(seed=inputs.noise_seed))


class DisableNoise(Node):
    """No starting noise: the latent is sampled as it is."""

    class_type = "DisableNoise"
    category = "sampling/custom_sampling/noise"
    description = "Adds no starting noise, for latents that already carry theirs (a second pass)."

    class Inputs(NodeInputs):
        pass

    Outputs = _NoiseOut

    def run(self, ctx: RunContext, inputs: Inputs) -> _NoiseOut:
        """A disabled source (seed 0 for any in-loop noise)."""
        return _NoiseOut(NOISE=Noise(seed=0, enabled=False))


class _GuiderOut(NodeOutputs):
    GUIDER: Guider = Output(name="GUIDER", description="The guider.")


GUIDERS = "sampling/custom_sampling/guiders"


class BasicGuider(Node):
    """One conditioning, no negative: for guidance-distilled models such as FLUX."""

    class_type = "BasicGuider"
    category = GUIDERS
    description = "Guides with a single conditioning and no classifier-free guidance."

    class Inputs(NodeInputs):
        model: DiffusionModel = Input(description="The denoising model.")
        conditioning: Conditioning = Input(description="What the image should show.")

    Outputs = _GuiderOut

    def run(self, ctx: RunContext, inputs: Inputs) -> _GuiderOut:
        """A guider without a negative."""
        return _GuiderOut(GUIDER=Guider(inputs.model, "basic", {"positive": inputs.conditioning}))


class CFGGuider(Node):
    """Classifier-free guidance between a positive and a negative conditioning."""

    class_type = "CFGGuider"
    category = GUIDERS
    description = "Guides with a positive and a negative conditioning at a CFG scale, as KSampler does."

    class Inputs(NodeInputs):
        model: DiffusionModel = Input(description="The denoising model.")
        positive: Conditioning = Input(description="What the image should show.")
        negative: Conditioning = Input(description="What the image should avoid.")
        cfg: float = Input(8.0, ge=0.0, le=100.0, step=0.1, round=0.01, description=CFG_TIP)

    Outputs = _GuiderOut

    def run(self, ctx: RunContext, inputs: Inputs) -> _GuiderOut:
        """A CFG guider."""
        conds = {"positive": inputs.positive, "negative": inputs.negative}
        return _GuiderOut(GUIDER=Guider(inputs.model, "cfg", conds, cfg=inputs.cfg))


class DualCFGGuider(Node):
    """Two guidance scales: cond1 against cond2, and cond2 against the negative."""

    class_type = "DualCFGGuider"
    category = GUIDERS
    description = "Guides with two conditionings and a negative, each pair with its own scale."

    class Inputs(NodeInputs):
        model: DiffusionModel = Input(description="The denoising model.")
        cond1: Conditioning = Input(description="The main conditioning.")
        cond2: Conditioning = Input(description="The second conditioning, between cond1 and the negative.")
        negative: Conditioning = Input(description="What the image should avoid.")
        cfg_conds: float = Input(
            8.0, ge=0.0, le=100.0, step=0.1, round=0.01, description="The scale of cond1 over cond2."
        )
        cfg_cond2_negative: float = Input(
            8.0, ge=0.0, le=100.0, step=0.1, round=0.01, description="The scale of cond2 over the negative."
        )
        style: Literal["regular", "nested"] = Input(
            "regular", description="regular: the two guidance terms add up; nested: one wraps the other."
        )

    Outputs = _GuiderOut

    def run(self, ctx: RunContext, inputs: Inputs) -> _GuiderOut:
        """A dual-CFG guider."""
        conds = {"positive": inputs.cond1, "middle": inputs.cond2, "negative": inputs.negative}
        kind: GuidanceKind = "dual_cfg_nested" if inputs.style == "nested" else "dual_cfg"
        guider = Guider(inputs.model, kind, conds, cfg=inputs.cfg_conds, cfg2=inputs.cfg_cond2_negative)
        return _GuiderOut(GUIDER=guider)


NODES = [
    SamplerCustom,
    SamplerCustomAdvanced,
    RandomNoise,
    DisableNoise,
    BasicGuider,
    CFGGuider,
    DualCFGGuider,
]
