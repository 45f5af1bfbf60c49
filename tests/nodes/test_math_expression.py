"""ComfyMathExpression: ComfyUI's API names, safe evaluation, and results on all three outputs."""

from __future__ import annotations

import pytest

from engine import Environment, Registry
from engine.executor import Executor
from engine.schema import object_info
from engine.validation import validate_prompt
from nodes.defs.math_expression import ComfyMathExpression, evaluate
from nodes.defs.primitives import PrimitiveFloat, PrimitiveInt
from tests.stub_pack.flow import ShowInt


def _run(tmp_path, prompt):
    registry = Registry([PrimitiveInt, PrimitiveFloat, ComfyMathExpression, ShowInt])
    env = Environment(output_dir=tmp_path / "out", temp_dir=tmp_path / "temp", input_dir=tmp_path / "in")
    checked = validate_prompt(prompt, registry, env=env)
    assert checked.ok, checked.node_errors
    return Executor(registry, env).execute(checked.prompt, prompt_id="p", outputs=checked.outputs)


def test_math_expression_computes_from_linked_letters_as_a_template_does(tmp_path):
    # The frame-count formula of a current video template: duration * fps rounded to 8k + 1.
    prompt = {
        "1": {"class_type": "PrimitiveFloat", "inputs": {"value": 5.0}},
        "2": {"class_type": "PrimitiveInt", "inputs": {"value": 24}},
        "3": {
            "class_type": "ComfyMathExpression",
            "inputs": {"expression": "1 + floor(a*b/8)*8", "values.a": ["1", 0], "values.b": ["2", 0]},
        },
        "4": {"class_type": "ShowInt", "inputs": {"x": ["3", 1]}},
    }
    result = _run(tmp_path, prompt)
    assert result.status == "success", result.error
    assert result.ui_outputs["4"] == {"values": [121]}


def test_math_expression_schema_matches_comfyui_names():
    info = object_info(ComfyMathExpression)
    assert info["output"] == ["FLOAT", "INT", "BOOLEAN"]
    assert info["output_name"] == ["FLOAT", "INT", "BOOL"]
    assert info["input"]["required"]["expression"][1]["default"] == "a + b"
    optional = info["input"]["optional"]
    assert list(optional)[:2] == ["values.a", "values.b"] and len(optional) == 26
    assert optional["values.z"][0] == "FLOAT,INT,BOOLEAN"


@pytest.mark.parametrize(
    ("expression", "values", "expected"),
    [
        ("a + b", {"a": 2, "b": 3}, 5),
        ("sum(values) / 2", {"a": 1, "b": 2, "c": 3}, 3.0),
        ("max(a, 3) ** 2", {"a": 2}, 9),
        ("round(a * 24)", {"a": 1.01}, 24),
        ("a > 1", {"a": 2}, True),
    ],
)
def test_math_expression_evaluates(expression, values, expected):
    assert evaluate(expression, values) == expected


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("", "empty"),
        ("__import__('os')", "failed"),
        ("a.__class__", "failed"),
        ("pow(2, 100000)", "limit"),
        ("'text'", "not a number"),
        ("1e308 * 10", "finite"),
        ("1 / 0", "failed"),
        ("x + 1", "failed"),
    ],
)
def test_math_expression_refuses_what_is_not_arithmetic(expression, message):
    with pytest.raises(Exception, match=message) as caught:
        evaluate(expression, {"a": 1})
    assert getattr(caught.value, "code", None) == "invalid_expression"
