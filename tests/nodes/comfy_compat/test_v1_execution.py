"""V1 packs run with ComfyUI's semantics: lazy, lists, expansion, blockers, async, hooks, value shapes."""

from __future__ import annotations

import sys
import threading

from engine import CancelToken
from engine.validation import validate_prompt


def link(node: str, slot: int = 0) -> list:
    return [node, slot]


def show(value_link: list) -> dict:
    return {"class_type": "V1Show", "inputs": {"value": value_link}}


def test_v1_lazy_switch_skips_the_unused_branch(run_prompt):
    prompt = {
        "1": {"class_type": "V1Int", "inputs": {"value": 1}},
        "2": {"class_type": "V1Int", "inputs": {"value": 2}},
        "3": {
            "class_type": "V1LazySwitch",
            "inputs": {"switch": False, "on_true": link("1"), "on_false": link("2")},
        },
        "4": show(link("3")),
    }
    result, events = run_prompt(prompt)
    assert result.ui_outputs["4"]["text"] == ["2"]
    assert "1" not in result.executed


def test_v1_lists_map_per_item_and_list_inputs_get_whole_lists(run_prompt):
    prompt = {
        "1": {"class_type": "V1Range", "inputs": {"count": 3}},
        "2": {"class_type": "V1Scale", "inputs": {"x": link("1"), "factor": 10}},
        "3": show(link("2")),
        "4": {"class_type": "V1Sum", "inputs": {"xs": link("2")}},
        "5": show(link("4")),
    }
    result, _ = run_prompt(prompt)
    assert result.ui_outputs["3"]["text"] == ["0", "10", "20"]
    assert result.ui_outputs["5"]["text"] == ["30"]


def test_v1_expansion_recursion_uses_graphbuilder_ids(run_prompt):
    prompt = {"1": {"class_type": "V1Countdown", "inputs": {"n": 12, "acc": 0}}, "2": show(link("1"))}
    result, events = run_prompt(prompt)
    assert result.ui_outputs["2"]["text"] == ["12"]
    added = [e.node for e in events if e.type == "executing" and e.node != e.display_node]
    assert len(added) == 12 and added[0].startswith("1.0.0.")


def test_v1_blocker_with_message_reports_and_skips_consumers(run_prompt):
    prompt = {
        "1": {"class_type": "V1Int", "inputs": {"value": 5}},
        "2": {"class_type": "V1Gate", "inputs": {"value": link("1"), "open": False, "message": "closed"}},
        "3": show(link("2")),
    }
    result, events = run_prompt(prompt)
    errors = [e for e in events if e.type == "execution_error"]
    assert result.status == "success" and "3" not in result.ui_outputs
    assert errors[0].exception_message == "Execution Blocked: closed"


def test_v1_async_nodes_report_progress_and_stop_on_interrupt(run_prompt):
    prompt = {
        "1": {"class_type": "V1Int", "inputs": {"value": 5}},
        "2": {"class_type": "V1AsyncWait", "inputs": {"value": link("1"), "seconds": 0.05}},
        "3": {"class_type": "V1AsyncWait", "inputs": {"value": link("1"), "seconds": 0.06}},
        "4": show(link("2")),
        "5": show(link("3")),
    }
    result, events = run_prompt(prompt)
    assert result.ui_outputs["4"]["text"] == ["5"] and result.ui_outputs["5"]["text"] == ["5"]
    assert {e.node for e in events if e.type == "progress"} == {"2", "3"}
    prompt["2"]["inputs"]["seconds"] = prompt["3"]["inputs"]["seconds"] = 5.0
    cancel = CancelToken()
    threading.Timer(0.2, cancel.cancel).start()
    result, _ = run_prompt(prompt, cancel=cancel)
    assert result.status == "interrupted"


def test_v1_send_sync_reaches_the_prompt_events(run_prompt):
    result, events = run_prompt({"1": {"class_type": "V1Int", "inputs": {"value": 3}}, "2": show(link("1"))})
    custom = [e for e in events if e.type == "dg_test.shown"]
    assert custom and custom[0].data() == {"node": "2", "value": "3"}
    assert result.ui_outputs["2"]["classes"] == ["V1Show"]  # hidden PROMPT and UNIQUE_ID arrived


def test_v1_values_cross_the_boundary_in_comfyui_shapes(run_prompt):
    prompt = {
        "1": {"class_type": "MakeImage", "inputs": {"level": 0.25}},
        "2": {"class_type": "V1Invert", "inputs": {"image": link("1"), "latent": link("1", 1)}},
        "3": {"class_type": "ImageStats", "inputs": {"image": link("2"), "latent": link("2", 2)}},
    }
    result, _ = run_prompt(prompt)
    assert result.ui_outputs["3"] == {"mean": [0.75], "latent": [2.0]}


def test_v1_validate_inputs_judges_link_types_and_its_own_combo(packs_env):
    registry, env = packs_env
    prompt = {
        "1": {"class_type": "V1Int", "inputs": {"value": 3}},
        "2": {"class_type": "V1Picky", "inputs": {"value": link("1"), "mode": "custom:x"}},
        "3": show(link("2")),
    }
    assert validate_prompt(prompt, registry, env=env).ok  # "custom:x" is outside the list, but allowed
    prompt["2"]["inputs"]["mode"] = "shout"
    checked = validate_prompt(prompt, registry, env=env)
    assert not checked.ok and "unknown mode shout" in checked.node_errors["2"]["errors"][0]["details"]


def test_v1_kwargs_node_takes_undeclared_links(run_prompt):
    prompt = {
        "1": {"class_type": "V1Int", "inputs": {"value": 3}},
        "2": {"class_type": "V1Int", "inputs": {"value": 4}},
        "3": {"class_type": "V1Kwargs", "inputs": {"base": 10, "a": link("1"), "b": link("2")}},
        "4": show(link("3")),
    }
    result, _ = run_prompt(prompt)
    assert result.ui_outputs["4"]["text"] == ["17"]


def test_v1_is_changed_and_not_idempotent_decide_reruns(packs_env, run_prompt):
    value_nodes = sys.modules["custom_nodes.dg_test_v1.value_nodes"]
    value_nodes.STAMPS.clear()
    prompt = {
        "1": {"class_type": "V1Stamp", "inputs": {"always": False}},
        "2": show(link("1")),
    }
    run_prompt(prompt)
    run_prompt(prompt)
    assert len(value_nodes.STAMPS) == 1  # IS_CHANGED stable: cached
    prompt["1"]["inputs"]["always"] = True
    run_prompt(prompt)
    run_prompt(prompt)
    assert len(value_nodes.STAMPS) == 3  # NaN: runs every time
    twins = {
        "1": {"class_type": "V1Fresh", "inputs": {"always": False}},
        "2": {"class_type": "V1Fresh", "inputs": {"always": False}},
        "3": show(link("1")),
        "4": show(link("2")),
    }
    value_nodes.STAMPS.clear()
    run_prompt(twins)
    assert sorted(value_nodes.STAMPS) == ["1", "2"]  # not idempotent: no sharing between ids


def test_v1_folder_paths_reach_the_configured_folders(packs_env, run_prompt):
    _, env = packs_env
    prompt = {
        "1": {"class_type": "V1Files", "inputs": {"ckpt_name": "tiny.safetensors", "size": 64}},
        "2": show(link("1")),
    }
    result, _ = run_prompt(prompt)
    path, output, annotated = result.ui_outputs["2"]["text"][0].split("|")
    assert path.endswith("checkpoints/tiny.safetensors")
    assert output == str(env.output_dir) and annotated == str(env.output_dir / "x.png")
