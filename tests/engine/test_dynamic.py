"""Dynamic execution: lazy inputs, list mapping, expansion and recursion, blockers, async nodes."""

from __future__ import annotations

import threading
import time

import pytest

from engine import CancelToken
from engine.executor import Executor
from engine.validation import validate_prompt
from tests.stub_pack import flow as stubs


def link(node: str, slot: int = 0) -> list:
    return [node, slot]


@pytest.fixture
def dyn(env):
    stubs.CALLS.clear()
    stubs.GATES.clear()
    registry = stubs.registry()
    return registry, Executor(registry, env)


def run(dyn, prompt, **kwargs):
    registry, executor = dyn
    checked = validate_prompt(prompt, registry)
    assert checked.ok, checked.node_errors
    stubs.CALLS.clear()
    events = []
    result = executor.execute(
        checked.prompt, prompt_id="p", outputs=checked.outputs, sink=events.append, **kwargs
    )
    return result, events


def switch_prompt(switch: bool) -> dict:
    return {
        "1": {"class_type": "IntValue", "inputs": {"value": 1}},
        "2": {"class_type": "IntValue", "inputs": {"value": 2}},
        "3": {
            "class_type": "LazySwitch",
            "inputs": {"switch": switch, "on_true": link("1"), "on_false": link("2")},
        },
        "4": {"class_type": "ShowInt", "inputs": {"x": link("3")}},
    }


def test_lazy_switch_runs_only_the_branch_it_asks_for(dyn):
    result, events = run(dyn, switch_prompt(False))
    assert result.status == "success"
    assert result.ui_outputs["4"] == {"values": [2]}
    assert "1" not in stubs.CALLS and "1" not in result.executed
    executing = [e.node for e in events if e.type == "executing"]
    assert "1" not in executing and executing.count("3") == 2  # asked for its input, then ran


def test_lazy_switch_change_reruns_only_the_switch_side(dyn):
    run(dyn, switch_prompt(False))
    result, events = run(dyn, switch_prompt(True))
    assert result.ui_outputs["4"] == {"values": [1]}
    assert "2" not in stubs.CALLS and "1" in stubs.CALLS


def test_list_output_fans_out_into_per_item_runs_and_ui(dyn):
    prompt = {
        "1": {"class_type": "Range", "inputs": {"count": 3}},
        "2": {"class_type": "Scale", "inputs": {"x": link("1"), "factor": 10}},
        "3": {"class_type": "ShowInt", "inputs": {"x": link("2")}},
        "4": {"class_type": "Total", "inputs": {"xs": link("2")}},
        "5": {"class_type": "ShowInt", "inputs": {"x": link("4")}},
    }
    result, _ = run(dyn, prompt)
    assert stubs.CALLS.count("2") == 3 and stubs.CALLS.count("4") == 1
    assert result.ui_outputs["3"] == {"values": [0, 10, 20]}
    assert result.ui_outputs["5"] == {"values": [30]}


def test_list_mapping_repeats_the_last_item_of_the_shorter_list(dyn):
    prompt = {
        "1": {"class_type": "Range", "inputs": {"count": 3}},
        "2": {"class_type": "Range", "inputs": {"count": 2}},
        "3": {"class_type": "Scale", "inputs": {"x": link("1"), "factor": link("2")}},
        "4": {"class_type": "ShowInt", "inputs": {"x": link("3")}},
    }
    result, _ = run(dyn, prompt)
    assert result.ui_outputs["4"] == {"values": [0, 1, 2]}  # factors 0, 1, 1


def countdown_prompt(n: int, step: int = 1) -> dict:
    return {
        "1": {"class_type": "Countdown", "inputs": {"n": n, "acc": 0, "step": step}},
        "2": {"class_type": "ShowInt", "inputs": {"x": link("1")}},
    }


def test_expansion_recursion_runs_with_derived_ids_and_display_ids(dyn):
    result, events = run(dyn, countdown_prompt(20))
    assert result.ui_outputs["2"] == {"values": [20]}
    executing = [e for e in events if e.type == "executing"]
    added = [e for e in executing if e.node != e.display_node]
    assert len(added) == 20
    assert all(e.node.startswith("1.r") and e.display_node == "1" for e in added)


def test_expansion_results_are_cached_and_a_changed_input_reruns(dyn):
    run(dyn, countdown_prompt(5))
    result, events = run(dyn, countdown_prompt(5))
    assert stubs.CALLS == [] and "1" in result.cached
    result, _ = run(dyn, countdown_prompt(5, step=2))
    assert result.ui_outputs["2"] == {"values": [10]}


def test_expansion_into_unknown_node_fails_naming_the_parent(dyn):
    registry, executor = dyn

    class Bad(stubs.Countdown):
        class_type = "BadExpand"

        def run(self, ctx, inputs):
            from engine import NodeResult

            return NodeResult(values=(["x", 0],), expand={"x": {"class_type": "Nope", "inputs": {}}})

    registry.register(Bad)
    prompt = {
        "1": {"class_type": "BadExpand", "inputs": {"n": 1}},
        "2": {"class_type": "ShowInt", "inputs": {"x": link("1")}},
    }
    result, _ = run(dyn, prompt)
    assert result.status == "error" and result.error.node_id == "1"
    assert "unknown type 'Nope'" in result.error.exception_message


def gate_prompt(message: str) -> dict:
    return {
        "1": {"class_type": "IntValue", "inputs": {"value": 4}},
        "2": {"class_type": "Gate", "inputs": {"x": link("1"), "open": False, "message": message}},
        "3": {"class_type": "Scale", "inputs": {"x": link("2")}},
        "4": {"class_type": "ShowInt", "inputs": {"x": link("3")}},
        "5": {"class_type": "ShowInt", "inputs": {"x": link("1")}},
    }


def test_blocker_stops_consumers_silently_and_the_prompt_succeeds(dyn):
    result, events = run(dyn, gate_prompt(""))
    assert result.status == "success"
    assert "3" not in stubs.CALLS and "4" not in stubs.CALLS
    assert "4" not in result.ui_outputs and result.ui_outputs["5"] == {"values": [4]}
    assert not [e for e in events if e.type == "execution_error"]


def test_blocker_with_message_reports_an_error_event_once(dyn):
    result, events = run(dyn, gate_prompt("no luck"))
    errors = [e for e in events if e.type == "execution_error"]
    assert result.status == "success" and len(errors) == 1
    assert errors[0].node_id == "3" and errors[0].exception_message == "Execution Blocked: no luck"


def async_prompt() -> dict:
    return {
        "1": {"class_type": "IntValue", "inputs": {"value": 1}},
        "2": {"class_type": "Wait", "inputs": {"x": link("1"), "name": "a"}},
        "3": {"class_type": "Wait", "inputs": {"x": link("1"), "name": "b"}},
        "4": {"class_type": "ShowInt", "inputs": {"x": link("2")}},
        "5": {"class_type": "ShowInt", "inputs": {"x": link("3")}},
    }


def release_when_both_started() -> threading.Thread:
    def release():
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not {"start a", "start b"} <= set(stubs.CALLS):
            time.sleep(0.01)
        stubs.GATES.setdefault("b", threading.Event()).set()
        stubs.GATES.setdefault("a", threading.Event()).set()

    thread = threading.Thread(target=release)
    thread.start()
    return thread


def test_async_nodes_run_concurrently_and_report_progress(dyn):
    thread = release_when_both_started()
    result, events = run(dyn, async_prompt())
    thread.join()
    assert result.status == "success"
    assert stubs.CALLS.index("start b") < stubs.CALLS.index("end a")  # both in flight together
    assert {e.node for e in events if e.type == "progress"} == {"2", "3"}
    assert result.ui_outputs["4"] == {"values": [1]} and result.ui_outputs["5"] == {"values": [1]}


def test_async_nodes_stop_on_interrupt(dyn):
    cancel = CancelToken()
    timer = threading.Timer(0.2, cancel.cancel)
    timer.start()
    result, events = run(dyn, async_prompt(), cancel=cancel)
    assert result.status == "interrupted"
    assert events[-1].type == "execution_interrupted"
    assert "end a" not in stubs.CALLS


def test_expansion_into_a_cycle_fails_on_the_expanding_node_without_hanging(dyn):
    registry, _ = dyn

    class Loopy(stubs.Countdown):
        class_type = "Loopy"

        def run(self, ctx, inputs):
            from engine import NodeResult

            a, b = f"{ctx.node_id}.a", f"{ctx.node_id}.b"
            graph = {
                a: {"class_type": "Scale", "inputs": {"x": [b, 0], "factor": 2}},
                b: {"class_type": "Scale", "inputs": {"x": [a, 0], "factor": 2}},
            }
            return NodeResult(values=([a, 0],), expand=graph)

    registry.register(Loopy)
    prompt = {
        "1": {"class_type": "Loopy", "inputs": {"n": 1}},
        "2": {"class_type": "ShowInt", "inputs": {"x": link("1")}},
    }
    result, _ = run(dyn, prompt)
    assert result.status == "error" and result.error.node_id == "1"
    assert "depends on itself" in result.error.exception_message
