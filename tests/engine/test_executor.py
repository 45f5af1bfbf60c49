"""Executor behaviour: order, pruning, caching, forcing, events, cancellation and error wrapping."""

from __future__ import annotations

from engine import CancelToken
from engine.cache import OutputCache
from engine.executor import Executor
from engine.validation import validate_prompt
from tests.stub_pack import arithmetic
from tests.stub_pack.arithmetic import link


def chain_prompt(seed: int = 5) -> dict:
    return {
        "1": {"class_type": "Constant", "inputs": {"value": 2}},
        "2": {"class_type": "Seeded", "inputs": {"number": link("1"), "seed": seed, "mode": "add"}},
        "3": {"class_type": "Show", "inputs": {"number": link("2"), "label": "a"}},
        "4": {"class_type": "Seeded", "inputs": {"number": link("1"), "seed": 1, "mode": "mul"}},
        "5": {"class_type": "Show", "inputs": {"number": link("4"), "label": "b"}},
        "9": {"class_type": "Constant", "inputs": {"value": 7}},  # not an ancestor of any output
    }


def run(executor, registry, prompt, **kwargs):
    result = validate_prompt(prompt, registry, targets=kwargs.pop("targets", None))
    assert result.ok, result.node_errors
    arithmetic.CALLS.clear()
    return executor.execute(
        result.prompt, prompt_id=kwargs.pop("prompt_id", "p"), outputs=result.outputs, **kwargs
    )


def test_executor_runs_only_ancestors_of_outputs_in_dependency_order(executor, registry):
    result = run(executor, registry, chain_prompt())
    assert result.status == "success"
    assert "9" not in arithmetic.CALLS
    assert arithmetic.CALLS.index("1") < arithmetic.CALLS.index("2") < arithmetic.CALLS.index("3")
    assert result.ui_outputs == {"3": {"text": ["a=7.0"]}, "5": {"text": ["b=2.0"]}}


def test_executor_order_is_deterministic(registry, env):
    orders = []
    for _ in range(3):
        run(Executor(registry, env), registry, chain_prompt())
        orders.append(list(arithmetic.CALLS))
    assert orders[0] == orders[1] == orders[2]


def test_executor_identical_resubmission_executes_zero_nodes(executor, registry):
    run(executor, registry, chain_prompt())
    events = []
    result = run(executor, registry, chain_prompt(), sink=events.append)
    assert result.executed == [] and arithmetic.CALLS == []
    assert set(result.cached) == {"3", "5"}
    replayed = [e for e in events if e.type == "executed"]
    assert {e.node for e in replayed} == {"3", "5"}
    assert result.ui_outputs["3"] == {"text": ["a=7.0"]}
    assert not [e for e in events if e.type == "executing"]


def test_executor_seed_change_reruns_only_that_node_and_descendants(executor, registry):
    run(executor, registry, chain_prompt(seed=5))
    result = run(executor, registry, chain_prompt(seed=6))
    assert sorted(result.executed) == ["2", "3"]
    assert result.ui_outputs["3"] == {"text": ["a=8.0"]}


def test_executor_cache_ignores_node_ids(executor, registry):
    run(executor, registry, chain_prompt())
    renumbered = {
        "10": {"class_type": "Constant", "inputs": {"value": 2}},
        "20": {"class_type": "Seeded", "inputs": {"number": link("10"), "seed": 5, "mode": "add"}},
        "30": {"class_type": "Show", "inputs": {"number": link("20"), "label": "a"}},
    }
    result = run(executor, registry, renumbered)
    assert result.executed == []


def test_executor_force_whole_prompt_and_listed_nodes(executor, registry):
    run(executor, registry, chain_prompt())
    assert sorted(run(executor, registry, chain_prompt(), force=True).executed) == ["1", "2", "3", "4", "5"]
    assert sorted(run(executor, registry, chain_prompt(), force=["4"]).executed) == ["4", "5"]


def test_executor_partial_targets_run_only_selected_outputs(executor, registry):
    result = run(executor, registry, chain_prompt(), targets=["5"])
    assert sorted(result.executed) == ["1", "4", "5"]


def test_executor_event_order_matches_comfyui(executor, registry):
    events = []
    run(
        executor,
        registry,
        {
            "1": {"class_type": "Constant", "inputs": {}},
            "2": {"class_type": "Slow", "inputs": {"number": link("1"), "steps": 2}},
            "3": {"class_type": "Show", "inputs": {"number": link("2")}},
        },
        sink=events.append,
    )
    types = [e.type for e in events]
    assert types[:2] == ["execution_start", "execution_cached"]
    assert types[-1] == "execution_success"
    slow = types.index("executing", types.index("executing") + 1)
    assert types[slow - 1] == "progress_state"
    assert types[slow + 1 : slow + 5] == ["progress_state", "progress", "progress_state", "progress"]
    progress = [e for e in events if e.type == "progress"]
    assert [(p.value, p.max, p.node, p.prompt_id) for p in progress] == [(1, 2, "2", "p"), (2, 2, "2", "p")]
    last_state = [e for e in events if e.type == "progress_state"][-1]
    assert {n["state"] for n in last_state.nodes.values()} == {"finished"}


def test_executor_error_is_wrapped_with_node_id_and_keeps_finished_work(executor, registry):
    prompt = {
        "1": {"class_type": "Constant", "inputs": {"value": 3}},
        "2": {"class_type": "Show", "inputs": {"number": link("1")}},
        "3": {"class_type": "Fails", "inputs": {"number": link("1")}},
        "4": {"class_type": "Show", "inputs": {"number": link("3")}},
    }
    events = []
    result = run(executor, registry, prompt, sink=events.append)
    assert result.status == "error"
    err = result.error
    assert err.type == "execution_error"
    assert (err.node_id, err.node_type, err.prompt_id) == ("3", "Fails", "p")
    assert err.exception_type == "builtins.ZeroDivisionError" and err.exception_message == "boom"
    assert err.traceback == []
    assert err.current_inputs["number"][0].startswith("<tests.stub_pack.types.Number")
    assert "2" in result.executed and result.ui_outputs["2"] == {"text": ["x=3.0"]}
    assert events[-1].type == "execution_error"
    # finished work survives: the next identical run only retries the failed branch
    again = run(executor, registry, prompt)
    assert again.executed == [] and set(again.cached) == {"1", "2"} and again.error.node_id == "3"


def test_executor_user_facing_error_message_reaches_client(executor, registry):
    prompt = {
        "1": {"class_type": "Constant", "inputs": {}},
        "2": {"class_type": "Refuses", "inputs": {"number": link("1")}},
        "3": {"class_type": "Show", "inputs": {"number": link("2")}},
    }
    result = run(executor, registry, prompt)
    assert "put it in models/checkpoints" in result.error.exception_message


def test_executor_interrupt_inside_long_node(executor, registry):
    cancel = CancelToken()
    prompt = {
        "1": {"class_type": "Constant", "inputs": {}},
        "2": {"class_type": "Slow", "inputs": {"number": link("1"), "steps": 100}},
        "3": {"class_type": "Show", "inputs": {"number": link("2")}},
    }
    extra = {"cancel_at_step_2": True, "cancel_token": cancel}
    result = run(executor, registry, prompt, cancel=cancel, extra_data=extra)
    assert result.status == "interrupted"
    assert result.error.type == "execution_interrupted" and result.error.node_id == "2"
    assert "3" not in arithmetic.CALLS


def test_executor_interrupt_between_nodes(executor, registry):
    cancel = CancelToken()
    cancel.cancel()
    result = run(executor, registry, chain_prompt(), cancel=cancel)
    assert result.status == "interrupted" and arithmetic.CALLS == []


def test_executor_fingerprint_joins_cache_key(executor, registry):
    prompt = {
        "1": {"class_type": "Volatile", "inputs": {"path": "abc"}},
        "2": {"class_type": "Show", "inputs": {"number": link("1")}},
    }
    arithmetic.FINGERPRINTS["abc"] = "hash1"
    run(executor, registry, prompt)
    assert run(executor, registry, prompt).executed == []
    arithmetic.FINGERPRINTS["abc"] = "hash2"
    assert sorted(run(executor, registry, prompt).executed) == ["1", "2"]
    del arithmetic.FINGERPRINTS["abc"]  # NaN: always re-run
    assert sorted(run(executor, registry, prompt).executed) == ["1", "2"]
    assert sorted(run(executor, registry, prompt).executed) == ["1", "2"]


def test_executor_uncacheable_node_runs_on_every_identical_submission(executor, registry):
    class Clock(arithmetic.Constant):
        class_type = "Clock"
        cacheable = False

    registry.register(Clock)
    prompt = {
        "1": {"class_type": "Clock", "inputs": {"value": 3}},
        "2": {"class_type": "Show", "inputs": {"number": link("1")}},
        "3": {"class_type": "Constant", "inputs": {"value": 4}},
        "4": {"class_type": "Show", "inputs": {"number": link("3")}},
    }
    assert sorted(run(executor, registry, prompt).executed) == ["1", "2", "3", "4"]
    for _ in range(2):  # the second identical run would hit a remembered plan if one were kept
        again = run(executor, registry, prompt).executed
        assert "1" in again and "3" not in again and "4" not in again


def test_executor_cache_budget_evicts_least_recent(registry, env):
    executor = Executor(registry, env, cache=OutputCache(budget_bytes=300))
    run(executor, registry, chain_prompt(seed=1))
    assert executor.cache.used_bytes <= 300
    first_keys = len(executor.cache)
    run(executor, registry, chain_prompt(seed=2))
    run(executor, registry, chain_prompt(seed=3))
    assert executor.cache.used_bytes <= 300
    assert len(executor.cache) <= first_keys + 2
    # the oldest seed's sampler result was evicted, so it runs again
    assert "2" in run(executor, registry, chain_prompt(seed=1)).executed


def test_executor_linked_outputs_visible_to_nodes(executor, registry):
    seen = {}

    class Probe(arithmetic.Constant):
        class_type = "Probe"

        def run(self, ctx, inputs):
            seen["linked"] = ctx.is_linked("number")
            return super().run(ctx, inputs)

    registry.register(Probe)
    run(
        executor,
        registry,
        {
            "1": {"class_type": "Probe", "inputs": {}},
            "2": {"class_type": "Show", "inputs": {"number": link("1")}},
        },
    )
    assert seen["linked"] is True
