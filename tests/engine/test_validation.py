"""Validation: every ComfyUI error code, all problems reported at once, partially valid prompts."""

from __future__ import annotations

import pytest

from engine.validation import validate_prompt
from tests.stub_pack.arithmetic import link


def codes(result, node_id):
    return [e["type"] for e in result.node_errors[node_id]["errors"]]


def test_validation_not_an_object_is_invalid_prompt(registry):
    result = validate_prompt(["nope"], registry)
    assert not result.ok and result.error["type"] == "invalid_prompt"


def test_validation_missing_class_type_and_unknown_nodes_reported_together(registry):
    result = validate_prompt({"1": {"inputs": {}}, "2": {"class_type": "NoSuchNode", "inputs": {}}}, registry)
    assert result.error["type"] == "invalid_prompt"
    assert result.error["message"] == "Cannot execute because a node is missing the class_type property."
    assert set(result.node_errors) == {"1", "2"}
    assert "NoSuchNode does not exist" in result.node_errors["2"]["errors"][0]["message"]
    assert result.node_errors["2"]["errors"][0]["details"] == "Node ID '#2'"


def test_validation_no_outputs(registry):
    result = validate_prompt({"1": {"class_type": "Constant", "inputs": {}}}, registry)
    assert result.error == {
        "type": "prompt_no_outputs",
        "message": "Prompt has no outputs",
        "details": "",
        "extra_info": {},
    }


def test_validation_empty_partial_targets_means_no_outputs(registry):
    prompt = {
        "1": {"class_type": "Constant", "inputs": {}},
        "2": {"class_type": "Show", "inputs": {"number": link("1")}},
    }
    assert validate_prompt(prompt, registry, targets=[]).error["type"] == "prompt_no_outputs"


def test_validation_reports_every_problem_at_once(registry):
    prompt = {
        "1": {"class_type": "Constant", "inputs": {"value": "abc"}},
        "2": {"class_type": "Seeded", "inputs": {"seed": -1, "mode": "zz"}},
        "3": {"class_type": "Show", "inputs": {"number": link("2")}},
        "4": {"class_type": "Show", "inputs": {"number": link("1")}},
        "5": {"class_type": "Constant", "inputs": {"value": 5000}},
        "6": {"class_type": "Show", "inputs": {"number": link("5")}},
    }
    result = validate_prompt(prompt, registry)
    assert not result.ok
    assert result.error["type"] == "prompt_outputs_failed_validation"
    assert codes(result, "1") == ["invalid_input_type"]
    assert codes(result, "2") == ["required_input_missing", "value_smaller_than_min", "value_not_in_list"]
    assert codes(result, "5") == ["value_bigger_than_max"]
    assert result.node_errors["2"]["dependent_outputs"] == ["3"]
    assert result.node_errors["2"]["class_type"] == "Seeded"
    missing = result.node_errors["2"]["errors"][0]
    assert missing["extra_info"]["input_name"] == "number"
    assert result.node_errors["2"]["errors"][1]["message"] == "Value -1 smaller than min of 0"
    assert result.node_errors["2"]["errors"][2]["details"] == "mode: 'zz' not in ['add', 'mul']"
    assert all(e["details"] for entry in result.node_errors.values() for e in entry["errors"])


def test_validation_bad_links(registry):
    prompt = {
        "1": {"class_type": "Constant", "inputs": {}},
        "2": {"class_type": "Show", "inputs": {"number": link("99")}},
        "3": {"class_type": "Show", "inputs": {"number": link("1", 3)}},
        "4": {"class_type": "Show", "inputs": {"number": link("1"), "extra": link("1")}},
    }
    result = validate_prompt(prompt, registry)
    assert codes(result, "2") == ["bad_linked_input"]
    assert codes(result, "3") == ["bad_linked_input"]
    assert codes(result, "4") == ["bad_linked_input"]


def test_validation_return_type_mismatch(registry):
    prompt = {
        "1": {"class_type": "Constant", "inputs": {}},
        "2": {"class_type": "Show", "inputs": {"number": link("1"), "label": link("1")}},
    }
    result = validate_prompt(prompt, registry)
    err = result.node_errors["2"]["errors"][0]
    assert err["type"] == "return_type_mismatch"
    assert err["extra_info"]["received_type"] == "NUMBER" and err["extra_info"]["input_name"] == "label"


def test_validation_constant_for_link_type_is_invalid_input_type(registry):
    result = validate_prompt({"2": {"class_type": "Show", "inputs": {"number": 3}}}, registry)
    assert codes(result, "2") == ["invalid_input_type"]


def test_validation_custom_hooks(registry):
    prompt = {
        "1": {"class_type": "Constant", "inputs": {}},
        "2": {"class_type": "Picky", "inputs": {"number": link("1"), "word": "bad"}},
        "3": {"class_type": "Show", "inputs": {"number": link("2")}},
        "4": {"class_type": "Picky", "inputs": {"number": link("1"), "word": "explode"}},
        "5": {"class_type": "Show", "inputs": {"number": link("4")}},
    }
    result = validate_prompt(prompt, registry)
    assert codes(result, "2") == ["custom_validation_failed"]
    assert "pick another word" in result.node_errors["2"]["errors"][0]["details"]
    assert codes(result, "4") == ["exception_during_validation"]


def test_validation_cycle_is_reported_with_path(registry):
    prompt = {
        "1": {"class_type": "Add", "inputs": {"a": link("2"), "b": link("3")}},
        "2": {"class_type": "Add", "inputs": {"a": link("1"), "b": link("3")}},
        "3": {"class_type": "Constant", "inputs": {}},
        "4": {"class_type": "Show", "inputs": {"number": link("1")}},
    }
    result = validate_prompt(prompt, registry)
    assert not result.ok
    assert "exception_during_validation" in codes(result, "1")
    assert "remove one of these links" in result.node_errors["1"]["errors"][0]["details"]


def test_validation_partially_valid_prompt_runs_valid_outputs(registry):
    prompt = {
        "1": {"class_type": "Constant", "inputs": {}},
        "2": {"class_type": "Show", "inputs": {"number": link("1")}},
        "3": {"class_type": "Seeded", "inputs": {"number": link("1"), "seed": -5}},
        "4": {"class_type": "Show", "inputs": {"number": link("3")}},
    }
    result = validate_prompt(prompt, registry)
    assert result.ok and result.outputs == ["2"]
    assert codes(result, "3") == ["value_smaller_than_min"]


@pytest.mark.parametrize(("raw", "expected"), [("3", 3), (2.0, 2), (True, 1)])
def test_validation_coerces_constants_and_writes_them_back(registry, raw, expected):
    prompt = {
        "1": {"class_type": "Constant", "inputs": {}},
        "2": {"class_type": "Seeded", "inputs": {"number": link("1"), "seed": raw}},
        "3": {"class_type": "Show", "inputs": {"number": link("2"), "label": 12}},
    }
    result = validate_prompt(prompt, registry)
    assert result.ok
    assert (
        result.prompt["2"]["inputs"]["seed"] == expected and type(result.prompt["2"]["inputs"]["seed"]) is int
    )
    assert result.prompt["3"]["inputs"]["label"] == "12"


def test_validation_unwraps_value_wrapper_and_accepts_huge_seeds(registry):
    prompt = {
        "1": {"class_type": "Constant", "inputs": {"value": {"__value__": 4}}},
        "2": {"class_type": "Seeded", "inputs": {"number": link("1"), "seed": 2**64 - 1}},
        "3": {"class_type": "Show", "inputs": {"number": link("2")}},
    }
    assert validate_prompt(prompt, registry).ok


def test_validation_does_not_mutate_callers_prompt(registry):
    prompt = {
        "1": {"class_type": "Constant", "inputs": {"value": "3"}},
        "2": {"class_type": "Show", "inputs": {"number": link("1")}},
    }
    validate_prompt(prompt, registry)
    assert prompt["1"]["inputs"]["value"] == "3"


def test_validation_value_not_in_list_names_every_valid_choice():
    from engine import Input, Node, NodeInputs, NodeOutputs, Registry

    class ManyChoices(Node):
        class_type = "ManyChoices"
        output_node = True

        class Inputs(NodeInputs):
            pick: str = Input(combo_source="many")

        class Outputs(NodeOutputs):
            pass

    names = [f"choice_{i}" for i in range(30)]
    registry = Registry([ManyChoices], choices=lambda source: names)
    result = validate_prompt({"1": {"class_type": "ManyChoices", "inputs": {"pick": "nope"}}}, registry)
    err = result.node_errors["1"]["errors"][0]
    assert err["type"] == "value_not_in_list" and err["extra_info"]["input_config"] is None
    assert all(repr(name) in err["details"] for name in names)
