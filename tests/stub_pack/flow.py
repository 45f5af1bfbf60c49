"""Flow stub nodes for the dynamic executor: lazy switch, lists, expansion, blockers, async."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from engine import ExecutionBlocker, Input, Node, NodeInputs, NodeOutputs, NodeResult, Output, Registry

CALLS: list[str] = []
# Async nodes wait here until a test releases them (or cancels the run).
GATES: dict[str, threading.Event] = {}


class IntValue(Node):
    """An integer, recorded as called."""

    class_type = "IntValue"

    class Inputs(NodeInputs):
        value: int = Input(0, description="the number")

    class Outputs(NodeOutputs):
        value: int = Output(name="INT")

    def run(self, ctx, inputs):
        CALLS.append(ctx.node_id)
        return self.Outputs(value=inputs.value)


class LazySwitch(Node):
    """Passes one of two lazy inputs; the other branch never runs."""

    class_type = "LazySwitch"

    class Inputs(NodeInputs):
        switch: bool = Input(True, description="which branch")
        on_true: int | None = Input(None, description="branch a", lazy=True)
        on_false: int | None = Input(None, description="branch b", lazy=True)

    class Outputs(NodeOutputs):
        value: int = Output()

    def check_lazy_status(self, ctx, values):
        wanted = "on_true" if values["switch"] else "on_false"
        return [wanted] if values.get(wanted) is None else []

    def run(self, ctx, inputs):
        CALLS.append(ctx.node_id)
        return self.Outputs(value=inputs.on_true if inputs.switch else inputs.on_false)


class Range(Node):
    """A list output: 0..count-1, as separate items."""

    class_type = "Range"

    class Inputs(NodeInputs):
        count: int = Input(3, description="how many")

    class Outputs(NodeOutputs):
        values: list[int] = Output(is_list=True)

    def run(self, ctx, inputs):
        CALLS.append(ctx.node_id)
        return self.Outputs(values=list(range(inputs.count)))


class Scale(Node):
    """x * factor; fed lists it runs once per item."""

    class_type = "Scale"

    class Inputs(NodeInputs):
        x: int = Input(description="number")
        factor: int = Input(10, description="factor")

    class Outputs(NodeOutputs):
        value: int = Output()

    def run(self, ctx, inputs):
        CALLS.append(ctx.node_id)
        return self.Outputs(value=inputs.x * inputs.factor)


class Total(Node):
    """Sums a whole list (input_is_list)."""

    class_type = "Total"
    input_is_list = True

    class Inputs(NodeInputs):
        xs: list[Any] = Input(description="numbers")

    class Outputs(NodeOutputs):
        value: int = Output()

    def run(self, ctx, inputs):
        CALLS.append(ctx.node_id)
        return self.Outputs(value=sum(inputs.xs))


class ShowInt(Node):
    """Output node publishing its number in the UI."""

    class_type = "ShowInt"
    output_node = True

    class Inputs(NodeInputs):
        x: Any = Input(description="number")

    class Outputs(NodeOutputs):
        pass

    def run(self, ctx, inputs):
        CALLS.append(ctx.node_id)
        ctx.set_ui({"values": [inputs.x]})
        return self.Outputs()


class Countdown(Node):
    """Recursion through expansion: adds `step` n times by expanding into itself with n-1."""

    class_type = "Countdown"
    dynamic = True

    class Inputs(NodeInputs):
        n: int = Input(description="remaining")
        acc: int = Input(0, description="running total")
        step: int = Input(1, description="added per round")

    class Outputs(NodeOutputs):
        value: int = Output()

    def run(self, ctx, inputs):
        CALLS.append(ctx.node_id)
        if inputs.n == 0:
            return self.Outputs(value=inputs.acc)
        child = f"{ctx.node_id}.r"
        graph = {
            child: {
                "class_type": "Countdown",
                "inputs": {"n": inputs.n - 1, "acc": inputs.acc + inputs.step, "step": inputs.step},
            }
        }
        return NodeResult(values=([child, 0],), expand=graph)


class Gate(Node):
    """Passes x, or blocks its consumers (with a message when one is given)."""

    class_type = "Gate"
    dynamic = True

    class Inputs(NodeInputs):
        x: int = Input(description="number")
        open: bool = Input(True, description="pass or block")
        message: str = Input("", description="shown when blocking")

    class Outputs(NodeOutputs):
        value: int = Output()

    def run(self, ctx, inputs):
        CALLS.append(ctx.node_id)
        if inputs.open:
            return self.Outputs(value=inputs.x)
        return ExecutionBlocker(inputs.message or None)


class Wait(Node):
    """An async node: reports progress, then waits for its gate (or a cancel)."""

    class_type = "Wait"

    class Inputs(NodeInputs):
        x: int = Input(description="number")
        name: str = Input("a", description="gate name")

    class Outputs(NodeOutputs):
        value: int = Output()

    async def run(self, ctx, inputs):
        CALLS.append(f"start {inputs.name}")
        gate = GATES.setdefault(inputs.name, threading.Event())
        ctx.progress(1, 2)
        while not gate.is_set():
            ctx.check_cancelled()
            await asyncio.sleep(0.01)
        CALLS.append(f"end {inputs.name}")
        return self.Outputs(value=inputs.x)


NODES = [IntValue, LazySwitch, Range, Scale, Total, ShowInt, Countdown, Gate, Wait]


def registry() -> Registry:
    """A fresh registry of these nodes."""
    return Registry(NODES)
