"""Pure-Python stub nodes for engine tests; each test builds a fresh Registry from them."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any, Literal

from engine import Input, Node, NodeInputs, NodeOutputs, Output, Registry, UserFacingError
from tests.stub_pack.types import Number

CALLS: list[str] = []  # node ids in the order stubs ran; tests reset it
CALL_LOCK = threading.Lock()


def record(ctx: Any) -> None:
    with CALL_LOCK:
        CALLS.append(ctx.node_id)


class Constant(Node):
    class_type = "Constant"

    class Inputs(NodeInputs):
        value: float = Input(1.0, ge=-1000.0, le=1000.0, description="the number")

    class Outputs(NodeOutputs):
        number: Number = Output()

    def run(self, ctx, inputs):
        record(ctx)
        return self.Outputs(number=Number(inputs.value))


class Seeded(Node):
    class_type = "Seeded"

    class Inputs(NodeInputs):
        number: Number = Input(description="input")
        seed: int = Input(0, ge=0, le=2**64 - 1, control_after_generate=True)
        mode: Literal["add", "mul"] = Input("add")

    class Outputs(NodeOutputs):
        number: Number = Output()

    def run(self, ctx, inputs):
        record(ctx)
        value = (
            inputs.number.value + inputs.seed if inputs.mode == "add" else inputs.number.value * inputs.seed
        )
        return self.Outputs(number=Number(value))


class Add(Node):
    class_type = "Add"

    class Inputs(NodeInputs):
        a: Number = Input(description="first")
        b: Number = Input(description="second")

    class Outputs(NodeOutputs):
        number: Number = Output()

    def run(self, ctx, inputs):
        record(ctx)
        return self.Outputs(number=Number(inputs.a.value + inputs.b.value))


class Show(Node):
    class_type = "Show"
    output_node = True

    class Inputs(NodeInputs):
        number: Number = Input(description="shown")
        label: str = Input("x")

    class Outputs(NodeOutputs):
        pass

    def run(self, ctx, inputs):
        record(ctx)
        ctx.set_ui({"text": [f"{inputs.label}={inputs.number.value}"]})
        return self.Outputs()


class Slow(Node):
    class_type = "Slow"

    class Inputs(NodeInputs):
        number: Number = Input(description="input")
        steps: int = Input(5, ge=1, le=10000)

    class Outputs(NodeOutputs):
        number: Number = Output()

    def run(self, ctx, inputs):
        record(ctx)
        for step in range(inputs.steps):
            ctx.progress(step + 1, inputs.steps)
            if step == 1 and ctx.extra_data.get("cancel_at_step_2"):
                ctx.extra_data["cancel_token"].cancel()
        return self.Outputs(number=Number(inputs.number.value))


class Fails(Node):
    class_type = "Fails"

    class Inputs(NodeInputs):
        number: Number = Input(description="input")

    class Outputs(NodeOutputs):
        number: Number = Output()

    def run(self, ctx, inputs):
        record(ctx)
        raise ZeroDivisionError("boom")


class Picky(Node):
    class_type = "Picky"

    class Inputs(NodeInputs):
        number: Number = Input(description="input")
        word: str = Input("ok")

    class Outputs(NodeOutputs):
        number: Number = Output()

    @classmethod
    def validate_inputs(cls, values: Mapping[str, Any], env: Any) -> str | None:
        if values.get("word") == "bad":
            return "word must not be 'bad'; pick another word"
        if values.get("word") == "explode":
            raise RuntimeError("validator crashed")
        return None

    def run(self, ctx, inputs):
        record(ctx)
        return self.Outputs(number=inputs.number)


class Volatile(Node):
    class_type = "Volatile"

    class Inputs(NodeInputs):
        path: str = Input("a")

    class Outputs(NodeOutputs):
        number: Number = Output()

    @classmethod
    def fingerprint(cls, values: Mapping[str, Any], env: Any) -> Any:
        return FINGERPRINTS.get(values["path"], float("nan"))

    def run(self, ctx, inputs):
        record(ctx)
        return self.Outputs(number=Number(float(len(inputs.path))))


FINGERPRINTS: dict[str, Any] = {}


class Refuses(Node):
    class_type = "Refuses"

    class Inputs(NodeInputs):
        number: Number = Input(description="input")

    class Outputs(NodeOutputs):
        number: Number = Output()

    def run(self, ctx, inputs):
        raise UserFacingError("model file x.safetensors not found; put it in models/checkpoints")


ALL = [Constant, Seeded, Add, Show, Slow, Fails, Picky, Volatile, Refuses]


def fresh_registry() -> Registry:
    """A new registry with every stub node."""
    return Registry(ALL)


def link(node_id: str, slot: int = 0) -> list[Any]:
    """An API-format link."""
    return [node_id, slot]
