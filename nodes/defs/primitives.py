"""Primitive nodes: one constant (int, float, string, multiline string, boolean) fed to other nodes."""

from __future__ import annotations

import sys

from engine import Input, Node, NodeInputs, NodeOutputs, Output, RunContext

# ComfyUI bounds its primitive numbers by the platform's largest index value.
NUMBER_LIMIT = sys.maxsize


class PrimitiveInt(Node):
    """An integer constant."""

    class_type = "PrimitiveInt"
    display_name = "Int"
    category = "utils/primitive"

    class Inputs(NodeInputs):
        value: int = Input(
            ge=-NUMBER_LIMIT,
            le=NUMBER_LIMIT,
            control_after_generate=True,
            description="The integer passed on.",
        )

    class Outputs(NodeOutputs):
        INT: int = Output(name="INT", description="The value.")

    def run(self, ctx: RunContext, inputs: Inputs) -> Outputs:
        """Pass the value through."""
        return self.Outputs(INT=inputs.value)


class PrimitiveFloat(Node):
    """A floating-point constant."""

    class_type = "PrimitiveFloat"
    display_name = "Float"
    category = "utils/primitive"

    class Inputs(NodeInputs):
        value: float = Input(ge=-NUMBER_LIMIT, le=NUMBER_LIMIT, description="The number passed on.")

    class Outputs(NodeOutputs):
        FLOAT: float = Output(name="FLOAT", description="The value.")

    def run(self, ctx: RunContext, inputs: Inputs) -> Outputs:
        """Pass the value through."""
        return self.Outputs(FLOAT=inputs.value)


class PrimitiveString(Node):
    """A one-line text constant."""

    class_type = "PrimitiveString"
    display_name = "String"
    category = "utils/primitive"

    class Inputs(NodeInputs):
        value: str = Input(description="The text passed on.")

    class Outputs(NodeOutputs):
        STRING: str = Output(name="STRING", description="The value.")

    def run(self, ctx: RunContext, inputs: Inputs) -> Outputs:
        """Pass the value through."""
        return self.Outputs(STRING=inputs.value)


class PrimitiveStringMultiline(Node):
    """A multi-line text constant."""

    class_type = "PrimitiveStringMultiline"
    display_name = "String (Multiline)"
    category = "utils/primitive"

    class Inputs(NodeInputs):
        value: str = Input(multiline=True, description="The text passed on.")

    class Outputs(NodeOutputs):
        STRING: str = Output(name="STRING", description="The value.")

    def run(self, ctx: RunContext, inputs: Inputs) -> Outputs:
        """Pass the value through."""
        return self.Outputs(STRING=inputs.value)


class PrimitiveBoolean(Node):
    """A true/false constant."""

    class_type = "PrimitiveBoolean"
    display_name = "Boolean"
    category = "utils/primitive"

    class Inputs(NodeInputs):
        value: bool = Input(description="The switch passed on.")

    class Outputs(NodeOutputs):
        BOOLEAN: bool = Output(name="BOOLEAN", description="The value.")

    def run(self, ctx: RunContext, inputs: Inputs) -> Outputs:
        """Pass the value through."""
        return self.Outputs(BOOLEAN=inputs.value)


NODES = [PrimitiveString, PrimitiveStringMultiline, PrimitiveInt, PrimitiveFloat, PrimitiveBoolean]
