"""Property tests: whatever JSON arrives, validation answers in ComfyUI's shape and never crashes.

Prompts are generated from the stub nodes' real class types and input names, with values drawn from
everything JSON can carry (links to missing nodes and slots, cycles, wrong types, NaN-like strings,
huge numbers, nested containers), so most generated prompts are broken in several ways at once.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from engine.executor import Executor
from engine.validation import validate_prompt
from tests.stub_pack import arithmetic

CLASS_TYPES = [cls.class_type for cls in arithmetic.ALL] + ["NoSuchNode"]
INPUT_NAMES = sorted({name for cls in arithmetic.ALL for name in cls.Inputs.model_fields} | {"extra"})
NODE_IDS = [str(i) for i in range(6)]
ERROR_TYPES = {
    "required_input_missing",
    "bad_linked_input",
    "return_type_mismatch",
    "invalid_input_type",
    "value_smaller_than_min",
    "value_bigger_than_max",
    "value_not_in_list",
    "custom_validation_failed",
    "exception_during_validation",
    "invalid_prompt",
}

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.sampled_from(["add", "mul", "bad", "explode", "ok"]),
)
links = st.tuples(st.sampled_from([*NODE_IDS, "99"]), st.integers(min_value=-1, max_value=3)).map(list)
values = st.one_of(
    scalars,
    links,
    st.lists(scalars, max_size=3),
    st.dictionaries(st.sampled_from(["__value__", "x"]), st.lists(scalars, max_size=2), max_size=2),
)
nodes = st.one_of(
    st.fixed_dictionaries(
        {
            "class_type": st.sampled_from(CLASS_TYPES),
            "inputs": st.dictionaries(st.sampled_from(INPUT_NAMES), values, max_size=4),
        }
    ),
    st.fixed_dictionaries({"inputs": st.just({})}),  # no class_type
    st.fixed_dictionaries({"class_type": st.sampled_from(CLASS_TYPES), "inputs": scalars}),
    scalars,
)
# Structurally sound prompts (known classes, object inputs, an output node) reach the per-input
# checks, the cycle search and partial validity; values still range over good and bad ones.
KNOWN = [cls.class_type for cls in arithmetic.ALL]
sound_values = st.one_of(
    links, links, st.integers(min_value=-5, max_value=2000), st.sampled_from(["add", "ok", "bad"])
)
sound_nodes = st.fixed_dictionaries(
    {
        "class_type": st.sampled_from(KNOWN),
        "inputs": st.dictionaries(st.sampled_from(INPUT_NAMES), sound_values, max_size=3),
    }
)
sound_prompts = st.builds(
    lambda rest, value, second: {
        **rest,
        "0": {"class_type": "Show", "inputs": {"number": ["1", 0]}},
        "1": {"class_type": "Constant", "inputs": {"value": value}},
        "5": {"class_type": "Show", "inputs": {"number": second}},
    },
    st.dictionaries(st.sampled_from(NODE_IDS[2:5]), sound_nodes, max_size=3),
    st.integers(min_value=-1200, max_value=1200),
    links,
)
prompts = st.one_of(
    st.dictionaries(st.sampled_from(NODE_IDS), nodes, max_size=6),
    sound_prompts,
    sound_prompts,
    scalars,
    st.lists(scalars),
)


def _check_shape(node_errors: dict[str, Any]) -> None:
    for node_id, entry in node_errors.items():
        assert isinstance(node_id, str)
        assert set(entry) == {"errors", "dependent_outputs", "class_type"}
        assert entry["errors"], node_id
        for error in entry["errors"]:
            assert error["type"] in ERROR_TYPES, error
            assert isinstance(error["message"], str) and error["message"]
            assert isinstance(error["details"], str)
            assert isinstance(error["extra_info"], dict)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(prompt=prompts)
def test_validation_any_json_prompt_gets_an_answer_in_comfyui_shape(prompt, env):
    registry = arithmetic.fresh_registry()
    result = validate_prompt(prompt, registry)
    event("valid" if result.ok else str(result.error and result.error["type"]))
    _check_shape(result.node_errors)
    if result.ok:
        assert result.error is None and result.outputs
    else:
        assert result.error is not None and result.error["type"] in {
            "invalid_prompt",
            "prompt_no_outputs",
            "prompt_outputs_failed_validation",
        }
        assert not result.outputs
        return
    # Whatever validation accepts must run without the engine itself failing: node failures are
    # reported as execution_error events (the Fails/Refuses stubs), never raised.
    run = Executor(registry, env).execute(result.prompt, prompt_id="fuzz", outputs=result.outputs)
    assert run.status in {"success", "error"}
    if run.status == "error":
        assert run.error is not None and run.error.node_id in result.prompt
