"""ComfySwitchNode: pass one of two branches on a boolean; the branch not chosen never runs.

Its id and inputs follow the logic nodes newer ComfyUI releases ship (after the release diffgraph
pins), which workflows from those releases use.
"""

from __future__ import annotations

from typing import Any

from engine import Input, Node, NodeInputs, NodeOutputs, Output, RunContext


class ComfySwitchNode(Node):
    """If/else on a boolean with lazy branches."""

    class_type = "ComfySwitchNode"
    display_name = "If/Else Switch"
    category = "utilities/logic"
    description = (
        "Outputs on_true when switch is on and on_false when it is off; only that branch is computed."
    )
    experimental = True

    class Inputs(NodeInputs):
        switch: bool = Input(False, description="Which branch to pass on.")
        on_false: Any = Input(None, optional=True, lazy=True, description="Passed on when switch is off.")
        on_true: Any = Input(None, optional=True, lazy=True, description="Passed on when switch is on.")

    class Outputs(NodeOutputs):
        output: Any = Output(name="output", description="The chosen branch (nothing if it is unlinked).")

    def check_lazy_status(self, ctx: RunContext, values: dict[str, Any]) -> list[str]:
        """Ask only for the chosen branch, and only when it is linked and not computed yet."""
        wanted = "on_true" if values.get("switch") else "on_false"
        return [wanted] if wanted in values and values[wanted] is None else []

    def run(self, ctx: RunContext, inputs: Inputs) -> Outputs:
        """The chosen branch's value."""
        return self.Outputs(output=inputs.on_true if inputs.switch else inputs.on_false)


NODES = [ComfySwitchNode]
