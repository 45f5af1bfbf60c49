"""V3 packs (ComfyExtension + io.ComfyNode) run with the same semantics as V1 ones."""

from __future__ import annotations

import sys

from engine.validation import validate_prompt


def link(node: str, slot: int = 0) -> list:
    return [node, slot]


def show(value_link: list) -> dict:
    return {"class_type": "V3Show", "inputs": {"value": value_link}}


def test_v3_lazy_switch_and_hidden_unique_id(run_prompt):
    prompt = {
        "1": {"class_type": "V3Int", "inputs": {"value": 1}},
        "2": {"class_type": "V3Int", "inputs": {"value": 2}},
        "3": {
            "class_type": "V3LazySwitch",
            "inputs": {"switch": True, "on_true": link("1"), "on_false": link("2")},
        },
        "4": show(link("3")),
    }
    result, _ = run_prompt(prompt)
    assert result.ui_outputs["4"] == {"text": ["4:1"]}
    assert "2" not in result.executed


def test_v3_expansion_and_async_and_output_lists(run_prompt):
    prompt = {
        "1": {"class_type": "V3Countdown", "inputs": {"n": 3, "acc": 0}},
        "2": {"class_type": "V3AsyncDouble", "inputs": {"value": link("1")}},
        "3": show(link("2")),
        "4": {"class_type": "V3Range", "inputs": {"count": 3}},
        "5": {"class_type": "V3AsyncDouble", "inputs": {"value": link("4")}},
        "6": show(link("5")),
    }
    result, _ = run_prompt(prompt)
    assert result.ui_outputs["3"] == {"text": ["3:60"]}
    assert result.ui_outputs["6"] == {"text": ["6:0", "6:2", "6:4"]}


def test_v3_block_execution_reports_its_message(run_prompt):
    prompt = {
        "1": {"class_type": "V3Int", "inputs": {"value": 1}},
        "2": {"class_type": "V3Gate", "inputs": {"value": link("1"), "message": "stop here"}},
        "3": show(link("2")),
    }
    result, events = run_prompt(prompt)
    assert "3" not in result.ui_outputs
    assert [e.exception_message for e in events if e.type == "execution_error"] == [
        "Execution Blocked: stop here"
    ]


def test_v3_validate_and_fingerprint_hooks(packs_env, run_prompt):
    registry, env = packs_env
    runs = sys.modules["custom_nodes.dg_test_v3"].RUNS
    prompt = {"1": {"class_type": "V3Picky", "inputs": {"mode": "a", "value": -1}}, "2": show(link("1"))}
    checked = validate_prompt(prompt, registry, env=env)
    assert not checked.ok and "must not be negative" in checked.node_errors["1"]["errors"][0]["details"]
    prompt["1"]["inputs"]["value"] = 1
    runs.clear()
    run_prompt(prompt)
    run_prompt(prompt)
    assert runs == ["V3Picky"]  # a stable fingerprint: the second run is cached
    prompt["1"]["inputs"]["mode"] = "b"
    run_prompt(prompt)
    run_prompt(prompt)
    assert runs == ["V3Picky"] * 3  # NaN fingerprint: every run executes
