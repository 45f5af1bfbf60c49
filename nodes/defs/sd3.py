"""SD3-family guidance node: SkipLayerGuidanceSD3."""

from __future__ import annotations

from dataclasses import replace

from engine import Input, Node, NodeInputs, NodeOutputs, Output, RunContext
from nodes.diffusion.model_handle import DiffusionModel
from nodes.sampling.flow import model_sampling_for
from nodes.sampling.skip_layers import parse_layers
from nodes.types import SkipLayerGuidance


class SkipLayerGuidanceSD3(Node):
    """Adds Skip Layer Guidance to a transformer model (SD3.5): structure gets firmer and more detailed."""

    class_type = "SkipLayerGuidanceSD3"
    category = "advanced/guidance"
    description = (
        "Runs the positive prompt a second time with some transformer blocks skipped and steers the result "
        "away from that weaker prediction, early in sampling. Blocks 7, 8, 9 suit SD3.5 medium and large."
    )

    class Inputs(NodeInputs):
        model: DiffusionModel = Input(description="The transformer model to guide (SD3, SD3.5).")
        layers: str = Input(
            "7, 8, 9",
            multiline=False,
            description="Indices of the blocks to skip in the extra pass, separated by commas (0 = first block).",
        )
        scale: float = Input(
            3.0, ge=0.0, le=10.0, step=0.1, description="How strongly to steer away from the skipped pass."
        )
        start_percent: float = Input(
            0.01, ge=0.0, le=1.0, step=0.001, description="Point in sampling (0 = start) where it begins."
        )
        end_percent: float = Input(
            0.15, ge=0.0, le=1.0, step=0.001, description="Point in sampling (1 = end) where it stops."
        )

    class Outputs(NodeOutputs):
        MODEL: DiffusionModel = Output(name="MODEL", description="The model with the extra guidance pass.")

    def run(self, ctx: RunContext, inputs: Inputs) -> Outputs:
        """The model handle with one more guidance pass; no layers named leaves it unchanged."""
        layers = parse_layers(inputs.layers)
        if not layers:
            return self.Outputs(MODEL=inputs.model)
        # The window is fixed with the sampling the model has now, as ComfyUI computes it at patch time.
        ms = model_sampling_for(inputs.model)
        slg = SkipLayerGuidance(
            layers,
            inputs.scale,
            float(ms.percent_to_sigma(inputs.start_percent)),
            float(ms.percent_to_sigma(inputs.end_percent)),
        )
        model = replace(inputs.model, skip_guidance=(*inputs.model.skip_guidance, slg))
        return self.Outputs(MODEL=model)


NODES = (SkipLayerGuidanceSD3,)
