"""ComfySwitchNode: the chosen branch passes on and the other one never runs."""

from __future__ import annotations

import pytest

from engine import Environment, Registry
from engine.executor import Executor
from engine.validation import validate_prompt
from nodes.defs.logic import ComfySwitchNode
from nodes.defs.primitives import PrimitiveInt
from tests.stub_pack.flow import ShowInt


def _run(tmp_path, prompt):
    registry = Registry([PrimitiveInt, ComfySwitchNode, ShowInt])
    env = Environment(output_dir=tmp_path / "out", temp_dir=tmp_path / "temp", input_dir=tmp_path / "in")
    checked = validate_prompt(prompt, registry, env=env)
    assert checked.ok, checked.node_errors
    result = Executor(registry, env).execute(checked.prompt, prompt_id="p", outputs=checked.outputs)
    assert result.status == "success", result.error
    return result


@pytest.mark.parametrize(("switch", "shown", "skipped"), [(True, 1, "2"), (False, 2, "1")])
def test_switch_passes_the_chosen_branch_and_never_runs_the_other(tmp_path, switch, shown, skipped):
    prompt = {
        "1": {"class_type": "PrimitiveInt", "inputs": {"value": 1}},
        "2": {"class_type": "PrimitiveInt", "inputs": {"value": 2}},
        "3": {
            "class_type": "ComfySwitchNode",
            "inputs": {"switch": switch, "on_true": ["1", 0], "on_false": ["2", 0]},
        },
        "4": {"class_type": "ShowInt", "inputs": {"x": ["3", 0]}},
    }
    result = _run(tmp_path, prompt)
    assert result.ui_outputs["4"] == {"values": [shown]}
    assert skipped not in result.executed


def test_switch_with_the_chosen_branch_unlinked_passes_nothing(tmp_path):
    prompt = {
        "1": {"class_type": "PrimitiveInt", "inputs": {"value": 1}},
        "3": {"class_type": "ComfySwitchNode", "inputs": {"switch": False, "on_true": ["1", 0]}},
        "4": {"class_type": "ShowInt", "inputs": {"x": ["3", 0]}},
    }
    result = _run(tmp_path, prompt)
    assert result.ui_outputs["4"] == {"values": [None]} and "1" not in result.executed


def test_switch_interface_matches_comfyui_logic_node():
    info = Registry([ComfySwitchNode]).object_info()["ComfySwitchNode"]
    assert (
        list(info["input"]["required"]) == ["switch"] and info["input"]["required"]["switch"][0] == "BOOLEAN"
    )
    optional = info["input"]["optional"]
    assert list(optional) == ["on_false", "on_true"] and all(optional[k][1].get("lazy") for k in optional)
    assert info["category"] == "utilities/logic" and info["output_name"] == ["output"]
