"""Model sampling overrides: ModelSamplingDiscrete, ModelSamplingSD3, ModelSamplingAuraFlow.

Each returns the same model with another noise schedule and output reading; the weights are shared.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

from engine import Input, Node, NodeInputs, NodeOutputs, Output, RunContext
from nodes.diffusion import sd3
from nodes.diffusion.model_handle import DiffusionModel
from nodes.types import FlowSampling, Prediction

DiscreteChoice = Literal["eps", "v_prediction", "lcm", "x0", "img_to_img"]
_PREDICTIONS: dict[str, Prediction] = {
    "eps": "eps",
    "v_prediction": "v",
    "lcm": "lcm",
    "x0": "x0",
    "img_to_img": "img_to_img",
}
SHIFT_MAX = 100.0


class _ModelOut(NodeOutputs):
    MODEL: DiffusionModel = Output(name="MODEL", description="The same model with the new sampling rule.")


class ModelSamplingDiscrete(Node):
    """Treats a model as a 1000-step discrete-time model with the chosen output kind."""

    class_type = "ModelSamplingDiscrete"
    category = "advanced/model"
    description = (
        "Tells the samplers what the model predicts (noise, velocity, the clean image, or an LCM "
        "consistency output) and optionally switches to a zero-terminal-SNR noise table."
    )

    class Inputs(NodeInputs):
        model: DiffusionModel = Input(description="The model whose sampling rule is replaced.")
        sampling: DiscreteChoice = Input(
            "eps",
            description=(
                "What the network outputs: eps (noise, SD1.x), v_prediction (SD2 768, some fine-tunes), "
                "lcm (LCM distilled models), x0 or img_to_img (the clean latent)."
            ),
        )
        zsnr: bool = Input(
            False, description="Rescale the noise table so the last step is pure noise (models trained so)."
        )

    Outputs = _ModelOut

    def run(self, ctx: RunContext, inputs: Inputs) -> _ModelOut:
        """The model handle with a discrete table: flow settings dropped, prediction and zsnr set."""
        model = replace(inputs.model, prediction=_PREDICTIONS[inputs.sampling], zsnr=inputs.zsnr, flow=None)
        return _ModelOut(MODEL=model)


def _shift_input(default: float) -> float:
    return Input(
        default,
        ge=0.0,
        le=SHIFT_MAX,
        step=0.01,
        description="How far the schedule leans towards high noise; larger suits larger images.",
    )


class ModelSamplingSD3(Node):
    """Flow-matching sampling with SD3's time shift; the model sees sigma * 1000."""

    class_type = "ModelSamplingSD3"
    category = "advanced/model"
    description = (
        "Samples the model as a rectified flow (SD3, SD3.5) with a shifted noise schedule: the shift moves "
        "steps towards high noise, which large images need."
    )

    class Inputs(NodeInputs):
        model: DiffusionModel = Input(description="The model whose sampling rule is replaced.")
        shift: float = _shift_input(sd3.DEFAULT_SHIFT)

    Outputs = _ModelOut

    def run(self, ctx: RunContext, inputs: Inputs) -> _ModelOut:
        """The model handle with discrete-flow sampling at this shift."""
        flow = FlowSampling("discrete_flow", inputs.shift, sd3.TIMESTEP_MULTIPLIER)
        return _ModelOut(MODEL=replace(inputs.model, flow=flow))


class ModelSamplingAuraFlow(Node):
    """Flow-matching sampling with a time shift for models fed sigma itself (AuraFlow)."""

    class_type = "ModelSamplingAuraFlow"
    category = "advanced/model"
    description = (
        "Samples the model as a rectified flow whose network takes the noise level in 0..1 (AuraFlow and "
        "models like it), with a shifted noise schedule."
    )

    class Inputs(NodeInputs):
        model: DiffusionModel = Input(description="The model whose sampling rule is replaced.")
        shift: float = _shift_input(sd3.AURAFLOW_SHIFT)

    Outputs = _ModelOut

    def run(self, ctx: RunContext, inputs: Inputs) -> _ModelOut:
        """The model handle with discrete-flow sampling at this shift and multiplier 1."""
        flow = FlowSampling("discrete_flow", inputs.shift, sd3.AURAFLOW_MULTIPLIER)
        return _ModelOut(MODEL=replace(inputs.model, flow=flow))


NODES = (ModelSamplingDiscrete, ModelSamplingSD3, ModelSamplingAuraFlow)
