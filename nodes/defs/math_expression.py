"""ComfyMathExpression: a small arithmetic formula over up to 26 named numbers, evaluated without Python's eval.

ComfyUI's newer releases grow the `values.a`, `values.b`, ... sockets on demand (an "autogrow" input);
here the 26 names are fixed optional inputs with the same API names, so prompts written for ComfyUI run
unchanged and any subset of the letters may be linked. Expressions go through `simpleeval`, which only
knows arithmetic, comparisons and the functions listed below: no attribute access, no imports, capped
powers, so a prompt from the network cannot reach the interpreter.
"""

from __future__ import annotations

import math
import string
from collections.abc import Callable
from typing import Any

from pydantic import create_model
from simpleeval import InvalidExpression, simple_eval

from engine import Input, Node, NodeInputs, NodeOutputs, Output, RunContext, UserFacingError

NAMES = tuple(string.ascii_lowercase)
# Largest exponent pow() accepts: ** is capped inside simpleeval, pow() as a function is not.
MAX_EXPONENT = 4000
# Formulas are one-liners; a bound keeps a hostile prompt from parsing megabytes.
MAX_EXPRESSION_CHARS = 10_000


def _sum(*args: Any) -> Any:
    """sum(values) or sum(a, b, c)."""
    if len(args) == 1 and isinstance(args[0], list | tuple):
        return sum(args[0])
    return sum(args)


def _pow(base: Any, exponent: Any) -> Any:
    if abs(exponent) > MAX_EXPONENT:
        raise ValueError(f"exponent {exponent} is above the limit of {MAX_EXPONENT}")
    return pow(base, exponent)


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "sum": _sum,
    "min": min,
    "max": max,
    "abs": abs,
    "round": round,
    "pow": _pow,
    "sqrt": math.sqrt,
    "ceil": math.ceil,
    "floor": math.floor,
    "log": math.log,
    "log2": math.log2,
    "log10": math.log10,
    "sin": math.sin,
    "cos": math.cos,
    "tan": math.tan,
    "int": int,
    "float": float,
}


def _value_field(name: str) -> tuple[Any, Any]:
    return (
        float | int | bool | None,
        Input(None, optional=True, description=f"The number the formula calls `{name}`."),
    )


# The inputs model is built from the letter list: 26 hand-written fields would only restate it.
MathInputs = create_model(  # type: ignore[call-overload]
    "MathInputs",
    __base__=NodeInputs,
    __doc__="The formula and the numbers it names.",
    expression=(
        str,
        Input(
            "a + b",
            multiline=True,
            description=(
                "An arithmetic formula over the linked letters, e.g. `round(a * b / 8) * 8`; `values` is "
                "the list of all linked numbers. Functions: " + ", ".join(FUNCTIONS) + "."
            ),
        ),
    ),
    **{f"values.{name}": _value_field(name) for name in NAMES},
)


def evaluate(expression: str, values: dict[str, Any]) -> float | int | bool:
    """The formula's numeric result; a message naming the formula for anything else."""
    if not expression.strip():
        raise UserFacingError("the math expression is empty", code="invalid_expression")
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise UserFacingError(
            f"the math expression is {len(expression)} characters long (at most {MAX_EXPRESSION_CHARS})",
            code="invalid_expression",
        )
    names: dict[str, Any] = dict(values)
    names["values"] = list(values.values())
    try:
        result = simple_eval(expression, names=names, functions=FUNCTIONS)
    except (InvalidExpression, SyntaxError, ArithmeticError, ValueError, TypeError) as exc:
        raise UserFacingError(
            f"math expression {expression!r} failed: {exc}", code="invalid_expression"
        ) from exc
    if not isinstance(result, int | float):
        raise UserFacingError(
            f"math expression {expression!r} gave {type(result).__name__} {result!r}, not a number",
            code="invalid_expression",
        )
    try:
        as_float = float(result)
    except OverflowError:
        raise UserFacingError(
            f"math expression {expression!r} gave a number too large for a float", code="invalid_expression"
        ) from None
    if not math.isfinite(as_float):
        raise UserFacingError(
            f"math expression {expression!r} gave {as_float}, not a finite number", code="invalid_expression"
        )
    return result


class ComfyMathExpression(Node):
    """Computes a number from a formula over linked numbers; gives it as float, int and boolean."""

    class_type = "ComfyMathExpression"
    display_name = "Math Expression"
    category = "utilities"

    Inputs = MathInputs

    class Outputs(NodeOutputs):
        FLOAT: float = Output(name="FLOAT", description="The result as a float.")
        INT: int = Output(name="INT", description="The result truncated towards zero.")
        BOOL: bool = Output(name="BOOL", description="False when the result is zero.")

    def run(self, ctx: RunContext, inputs: NodeInputs) -> Outputs:
        """Evaluate with the linked letters in alphabetical order."""
        fields = inputs.model_dump()
        values = {name: fields[f"values.{name}"] for name in NAMES if fields[f"values.{name}"] is not None}
        result = evaluate(fields["expression"], values)
        return self.Outputs(FLOAT=float(result), INT=int(result), BOOL=bool(result))


NODES = (ComfyMathExpression,)
