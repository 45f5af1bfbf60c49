"""Scheduler and sigma nodes of the custom-sampling family: schedules as SIGMAS, and edits of them."""

from __future__ import annotations

from typing import Any, Literal

import torch

from engine import Input, Node, NodeInputs, NodeOutputs, Output, RunContext
from nodes.diffusion.model_handle import DiffusionModel
from nodes.sampling import extra_schedules as xs
from nodes.sampling.flow import ModelSampling, model_sampling_for
from nodes.sampling.schedulers import (
    SchedulerName,
    beta_sigmas,
    exponential_sigmas,
    karras_sigmas,
    schedule,
)
from nodes.types import Sigmas

SCHEDULES = "sampling/custom_sampling/schedulers"
SIGMA_OPS = "sampling/custom_sampling/sigmas"
STEPS_TIP = "How many denoising steps the schedule has."
DENOISE_TIP = "The share of the schedule to keep: below 1 only its quiet tail runs (image to image)."
# SD1.5's sigma range: the defaults ComfyUI gives its range-based schedulers.
SIGMA_MAX_DEFAULT, SIGMA_MIN_DEFAULT = 14.614642, 0.0291675


def precise_float(default: float, lo: float, hi: float, description: str, step: float = 0.01) -> Any:
    """A float widget that keeps full precision (no rounding to the step), as schedules and samplers need."""
    return Input(default, ge=lo, le=hi, step=step, round=False, description=description)


def _sigma_max() -> Any:
    return precise_float(
        SIGMA_MAX_DEFAULT,
        0.0,
        5000.0,
        "The noise level the schedule starts from.",
    )


def _sigma_min() -> Any:
    return precise_float(
        SIGMA_MIN_DEFAULT,
        0.0,
        5000.0,
        "The lowest noise level before the final step.",
    )


class _SigmasOut(NodeOutputs):
    SIGMAS: Sigmas = Output(name="SIGMAS", description="The noise schedule, highest first.")


class _ScheduleNode(Node):
    category = SCHEDULES
    Outputs = _SigmasOut


def _model_sampling(model: DiffusionModel) -> ModelSampling:
    return model_sampling_for(model)


class BasicScheduler(_ScheduleNode):
    """A named scheduler (as in KSampler) for a model, as SIGMAS."""

    class_type = "BasicScheduler"
    description = "Builds a named schedule (simple, karras, normal...) from the model's noise table."

    class Inputs(NodeInputs):
        model: DiffusionModel = Input(description="The model whose noise levels the schedule uses.")
        scheduler: SchedulerName = Input("simple", description="Which spacing of noise levels to use.")
        steps: int = Input(20, ge=1, le=10000, description=STEPS_TIP)
        denoise: float = Input(1.0, ge=0.0, le=1.0, step=0.01, description=DENOISE_TIP)

    def run(self, ctx: RunContext, inputs: Inputs) -> _SigmasOut:
        """The schedule, or its last `steps` + 1 sigmas of a longer one when denoise < 1."""
        total = inputs.steps
        if inputs.denoise < 1.0:
            if inputs.denoise <= 0.0:
                return _SigmasOut(SIGMAS=Sigmas(torch.FloatTensor([])))
            total = int(inputs.steps / inputs.denoise)
        sigmas = schedule(_model_sampling(inputs.model), inputs.scheduler, total)
        return _SigmasOut(SIGMAS=Sigmas(sigmas[-(inputs.steps + 1) :]))


class KarrasScheduler(_ScheduleNode):
    """Karras et al.'s schedule between two sigmas."""

    class_type = "KarrasScheduler"
    description = "Spaces noise levels evenly in sigma^(1/rho) between sigma_max and sigma_min."

    class Inputs(NodeInputs):
        steps: int = Input(20, ge=1, le=10000, description=STEPS_TIP)
        sigma_max: float = _sigma_max()
        sigma_min: float = _sigma_min()
        rho: float = precise_float(
            7.0,
            0.0,
            100.0,
            "Higher values spend more steps at low noise.",
        )

    def run(self, ctx: RunContext, inputs: Inputs) -> _SigmasOut:
        """Karras sigmas plus the final 0."""
        return _SigmasOut(
            SIGMAS=Sigmas(karras_sigmas(inputs.steps, inputs.sigma_min, inputs.sigma_max, inputs.rho))
        )


class ExponentialScheduler(_ScheduleNode):
    """Noise levels evenly spaced in log sigma."""

    class_type = "ExponentialScheduler"
    description = "Spaces noise levels evenly in log sigma between sigma_max and sigma_min."

    class Inputs(NodeInputs):
        steps: int = Input(20, ge=1, le=10000, description=STEPS_TIP)
        sigma_max: float = _sigma_max()
        sigma_min: float = _sigma_min()

    def run(self, ctx: RunContext, inputs: Inputs) -> _SigmasOut:
        """Log-uniform sigmas plus the final 0."""
        return _SigmasOut(SIGMAS=Sigmas(exponential_sigmas(inputs.steps, inputs.sigma_min, inputs.sigma_max)))


class PolyexponentialScheduler(_ScheduleNode):
    """Noise levels on a power ramp in log sigma."""

    class_type = "PolyexponentialScheduler"
    description = "Spaces noise levels along a power-rho ramp in log sigma (rho 1 is exponential)."

    class Inputs(NodeInputs):
        steps: int = Input(20, ge=1, le=10000, description=STEPS_TIP)
        sigma_max: float = _sigma_max()
        sigma_min: float = _sigma_min()
        rho: float = precise_float(
            1.0,
            0.0,
            100.0,
            "The ramp's power: above 1 lingers at high noise.",
        )

    def run(self, ctx: RunContext, inputs: Inputs) -> _SigmasOut:
        """Power-ramp sigmas plus the final 0."""
        sigmas = xs.polyexponential_sigmas(inputs.steps, inputs.sigma_min, inputs.sigma_max, inputs.rho)
        return _SigmasOut(SIGMAS=Sigmas(sigmas))


class LaplaceScheduler(_ScheduleNode):
    """Noise levels spaced by a Laplace distribution in log sigma."""

    class_type = "LaplaceScheduler"
    description = "Concentrates steps around log sigma = mu with spread beta (Laplace spacing)."

    class Inputs(NodeInputs):
        steps: int = Input(20, ge=1, le=10000, description=STEPS_TIP)
        sigma_max: float = _sigma_max()
        sigma_min: float = _sigma_min()
        mu: float = precise_float(0.0, -10.0, 10.0, "The log sigma the steps cluster around.", step=0.1)
        beta: float = precise_float(0.5, 0.0, 10.0, "How widely the steps spread around mu.", step=0.1)

    def run(self, ctx: RunContext, inputs: Inputs) -> _SigmasOut:
        """Laplace-spaced sigmas (ending at sigma_min, without a final 0)."""
        sigmas = xs.laplace_sigmas(inputs.steps, inputs.sigma_min, inputs.sigma_max, inputs.mu, inputs.beta)
        return _SigmasOut(SIGMAS=Sigmas(sigmas))


class VPScheduler(_ScheduleNode):
    """The continuous variance-preserving schedule."""

    class_type = "VPScheduler"
    description = "Samples the continuous variance-preserving (VP-SDE) noise schedule."

    class Inputs(NodeInputs):
        steps: int = Input(20, ge=1, le=10000, description=STEPS_TIP)
        beta_d: float = precise_float(
            19.9,
            0.0,
            5000.0,
            "The growth of beta over time (beta_max - beta_min).",
        )
        beta_min: float = precise_float(
            0.1,
            0.0,
            5000.0,
            "Beta at t = 0.",
        )
        eps_s: float = precise_float(0.001, 0.0, 1.0, "The smallest time sampled, just above 0.", step=0.0001)

    def run(self, ctx: RunContext, inputs: Inputs) -> _SigmasOut:
        """VP sigmas plus the final 0."""
        return _SigmasOut(
            SIGMAS=Sigmas(xs.vp_sigmas(inputs.steps, inputs.beta_d, inputs.beta_min, inputs.eps_s))
        )


class BetaSamplingScheduler(_ScheduleNode):
    """The beta-distribution schedule with adjustable shape."""

    class_type = "BetaSamplingScheduler"
    description = "Picks the model's timesteps by a Beta(alpha, beta) distribution's quantiles."

    class Inputs(NodeInputs):
        model: DiffusionModel = Input(description="The model whose noise levels the schedule uses.")
        steps: int = Input(20, ge=1, le=10000, description=STEPS_TIP)
        alpha: float = precise_float(
            0.6,
            0.0,
            50.0,
            "Beta distribution shape at the noisy end.",
        )
        beta: float = precise_float(
            0.6,
            0.0,
            50.0,
            "Beta distribution shape at the clean end.",
        )

    def run(self, ctx: RunContext, inputs: Inputs) -> _SigmasOut:
        """Beta-quantile sigmas plus the final 0."""
        sigmas = beta_sigmas(_model_sampling(inputs.model), inputs.steps, inputs.alpha, inputs.beta)
        return _SigmasOut(SIGMAS=Sigmas(sigmas))


class SDTurboScheduler(_ScheduleNode):
    """SD-Turbo's few-step schedule."""

    class_type = "SDTurboScheduler"
    description = "The 1-10 step schedule distilled SD-Turbo models expect (every 100th timestep)."

    class Inputs(NodeInputs):
        model: DiffusionModel = Input(description="The model whose noise levels the schedule uses.")
        steps: int = Input(1, ge=1, le=10, description=STEPS_TIP)
        denoise: float = Input(1.0, ge=0, le=1.0, step=0.01, description=DENOISE_TIP)

    def run(self, ctx: RunContext, inputs: Inputs) -> _SigmasOut:
        """Turbo sigmas plus the final 0."""
        sigmas = xs.sd_turbo_sigmas(_model_sampling(inputs.model), inputs.steps, inputs.denoise)
        return _SigmasOut(SIGMAS=Sigmas(sigmas))


class AlignYourStepsScheduler(_ScheduleNode):
    """NVIDIA's Align Your Steps schedules."""

    class_type = "AlignYourStepsScheduler"
    description = "Optimized noise levels published by Align Your Steps, resampled to the step count."

    class Inputs(NodeInputs):
        model_type: Literal["SD1", "SDXL", "SVD"] = Input(
            "SD1", description="The model family the schedule was tuned for."
        )
        steps: int = Input(10, ge=1, le=10000, description=STEPS_TIP)
        denoise: float = Input(1.0, ge=0.0, le=1.0, step=0.01, description=DENOISE_TIP)

    def run(self, ctx: RunContext, inputs: Inputs) -> _SigmasOut:
        """AYS sigmas ending at 0."""
        return _SigmasOut(SIGMAS=Sigmas(xs.ays_sigmas(inputs.model_type, inputs.steps, inputs.denoise)))


class GITSScheduler(_ScheduleNode):
    """The GITS optimized schedules."""

    class_type = "GITSScheduler"
    description = "Optimized noise levels from GITS for a chosen coefficient, resampled past 20 steps."

    class Inputs(NodeInputs):
        coeff: float = Input(
            1.20,
            ge=0.80,
            le=1.50,
            step=0.05,
            description="GITS' coefficient: which tuned family of schedules to use.",
        )
        steps: int = Input(10, ge=2, le=1000, description=STEPS_TIP)
        denoise: float = Input(1.0, ge=0.0, le=1.0, step=0.01, description=DENOISE_TIP)

    @classmethod
    def validate_inputs(cls, values: Any, env: Any) -> str | None:
        """Only the published coefficients (0.80 to 1.50 in steps of 0.05) have schedules."""
        coeff = values.get("coeff")
        if isinstance(coeff, int | float) and round(coeff, 2) not in xs.GITS_COEFFS:
            return f"coeff {coeff} has no GITS schedule; use a multiple of 0.05 from 0.80 to 1.50"
        return None

    def run(self, ctx: RunContext, inputs: Inputs) -> _SigmasOut:
        """GITS sigmas ending at 0."""
        return _SigmasOut(SIGMAS=Sigmas(xs.gits_sigmas(inputs.coeff, inputs.steps, inputs.denoise)))


class _TwoSigmasOut(NodeOutputs):
    high_sigmas: Sigmas = Output(name="high_sigmas", description="The first, noisier part of the schedule.")
    low_sigmas: Sigmas = Output(name="low_sigmas", description="The rest, from the split point down.")


class SplitSigmas(Node):
    """Cuts a schedule in two at a step."""

    class_type = "SplitSigmas"
    category = SIGMA_OPS
    description = "Splits a schedule at a step; both halves share that step's sigma, for chained samplers."

    class Inputs(NodeInputs):
        sigmas: Sigmas = Input(description="The schedule to split.")
        step: int = Input(0, ge=0, le=10000, description="The step where the second part begins.")

    Outputs = _TwoSigmasOut

    def run(self, ctx: RunContext, inputs: Inputs) -> _TwoSigmasOut:
        """sigmas[:step + 1] and sigmas[step:]."""
        s = inputs.sigmas.sigmas
        return _TwoSigmasOut(high_sigmas=Sigmas(s[: inputs.step + 1]), low_sigmas=Sigmas(s[inputs.step :]))


class SplitSigmasDenoise(Node):
    """Cuts a schedule in two so the second part is a denoise fraction of it."""

    class_type = "SplitSigmasDenoise"
    category = SIGMA_OPS
    description = "Splits a schedule so its low part covers the given denoise fraction of the steps."

    class Inputs(NodeInputs):
        sigmas: Sigmas = Input(description="The schedule to split.")
        denoise: float = Input(
            1.0, ge=0.0, le=1.0, step=0.01, description="The share of steps in the low part."
        )

    Outputs = _TwoSigmasOut

    def run(self, ctx: RunContext, inputs: Inputs) -> _TwoSigmasOut:
        """The last round(steps * denoise) steps form the low part."""
        s = inputs.sigmas.sigmas
        low = round(max(s.shape[-1] - 1, 0) * inputs.denoise)
        # As in ComfyUI, denoise 0 leaves the high part empty (s[:-0] is s[:0]).
        return _TwoSigmasOut(high_sigmas=Sigmas(s[:-low]), low_sigmas=Sigmas(s[-(low + 1) :]))


class FlipSigmas(Node):
    """Reverses a schedule (for inversion: noising an image along the schedule)."""

    class_type = "FlipSigmas"
    category = SIGMA_OPS
    description = "Reverses the schedule, low to high; a leading 0 becomes 0.0001 so steps stay valid."

    class Inputs(NodeInputs):
        sigmas: Sigmas = Input(description="The schedule to reverse.")

    Outputs = _SigmasOut

    def run(self, ctx: RunContext, inputs: Inputs) -> _SigmasOut:
        """The reversed schedule."""
        s = inputs.sigmas.sigmas
        if len(s) == 0:
            return _SigmasOut(SIGMAS=inputs.sigmas)
        flipped = s.flip(0)
        if flipped[0] == 0:
            flipped[0] = 0.0001
        return _SigmasOut(SIGMAS=Sigmas(flipped))


class SetFirstSigma(Node):
    """Replaces a schedule's first sigma."""

    class_type = "SetFirstSigma"
    category = SIGMA_OPS
    description = "Replaces the starting noise level of a schedule with the given value."

    class Inputs(NodeInputs):
        sigmas: Sigmas = Input(description="The schedule to change.")
        sigma: float = precise_float(136.0, 0.0, 20000.0, "The new first sigma.", step=0.001)

    Outputs = _SigmasOut

    def run(self, ctx: RunContext, inputs: Inputs) -> _SigmasOut:
        """A copy with sigmas[0] replaced."""
        s = inputs.sigmas.sigmas.clone()
        s[0] = inputs.sigma
        return _SigmasOut(SIGMAS=Sigmas(s))


NODES = [
    BasicScheduler,
    KarrasScheduler,
    ExponentialScheduler,
    PolyexponentialScheduler,
    LaplaceScheduler,
    VPScheduler,
    BetaSamplingScheduler,
    SDTurboScheduler,
    AlignYourStepsScheduler,
    GITSScheduler,
    SplitSigmas,
    SplitSigmasDenoise,
    FlipSigmas,
    SetFirstSigma,
]
