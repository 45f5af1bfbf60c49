"""Hint-image preprocessors for ControlNets: Canny edges."""

from __future__ import annotations

from engine import Input, Node, NodeInputs, NodeOutputs, Output, RunContext
from nodes.ops.canny import canny_edges
from nodes.types import Image


class Canny(Node):
    """White edges on black, found by the Canny detector (the hint a canny ControlNet expects)."""

    class_type = "Canny"
    category = "image/preprocessors"
    description = "Finds edges in an image with the Canny detector; the result feeds a canny ControlNet."

    class Inputs(NodeInputs):
        image: Image = Input(description="The pictures to find edges in.")
        low_threshold: float = Input(
            0.4,
            ge=0.01,
            le=0.99,
            step=0.01,
            description="Edge strength above which a pixel may join an edge.",
        )
        high_threshold: float = Input(
            0.8,
            ge=0.01,
            le=0.99,
            step=0.01,
            description="Edge strength above which a pixel surely is an edge.",
        )

    class Outputs(NodeOutputs):
        IMAGE: Image = Output(name="IMAGE", description="The edge maps, 1 on edges and 0 elsewhere, in RGB.")

    def run(self, ctx: RunContext, inputs: Inputs) -> Outputs:
        """Detect edges per image and spread them over three channels."""
        edges = canny_edges(inputs.image.pixels.movedim(-1, 1), inputs.low_threshold, inputs.high_threshold)
        return self.Outputs(IMAGE=Image(pixels=edges.repeat(1, 3, 1, 1).movedim(1, -1)))


NODES = [Canny]
