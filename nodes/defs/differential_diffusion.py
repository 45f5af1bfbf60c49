"""DifferentialDiffusion: a soft inpainting mask read as per-pixel timing rather than a fixed blend."""

from __future__ import annotations

from dataclasses import replace

from engine import Input, Node, NodeInputs, NodeOutputs, Output, RunContext
from nodes.diffusion.model_handle import DiffusionModel


class DifferentialDiffusion(Node):
    """Makes a sampler treat its noise mask as a schedule: each pixel is repainted once the run passes its value."""

    class_type = "DifferentialDiffusion"
    display_name = "Differential Diffusion"
    category = "_for_testing"
    experimental = True
    description = (
        "With a soft inpainting mask, pixels with higher mask values start changing earlier in the run, so "
        "the repainted region fades into the kept one instead of being cross-faded."
    )

    class Inputs(NodeInputs):
        model: DiffusionModel = Input(description="The model whose sampling runs should read masks this way.")
        strength: float = Input(
            1.0,
            optional=True,
            ge=0.0,
            le=1.0,
            step=0.01,
            description="1 uses the step-by-step threshold alone; lower values mix the soft mask back in.",
        )

    class Outputs(NodeOutputs):
        MODEL: DiffusionModel = Output(
            name="MODEL", description="The same model, reading noise masks as timing."
        )

    def run(self, ctx: RunContext, inputs: Inputs) -> Outputs:
        """A new handle with the strength set (the loaded weights are untouched)."""
        return self.Outputs(MODEL=replace(inputs.model, differential_diffusion=inputs.strength))


NODES = [DifferentialDiffusion]
