"""Damaged UI workflows: every mutation of the hand-written UI files converts or fails with a clear error."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from engine.errors import WorkflowFormatError
from engine.formats.ui_workflow import ui_to_api
from engine.validation import validate_prompt
from tests.stub_pack import arithmetic

DATA = Path(__file__).parent / "data" / "ui"
JUNK: list[Any] = [None, 1, -1, "x", [], {}, [1, 2], 1.5, True, "999", [None], {"name": 3}]


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*prefix, index))
    return found


def _damage(ui: dict[str, Any], rng: random.Random) -> None:
    """Replace or delete one to three values anywhere in the file."""
    paths = _paths(ui)[1:]
    for _ in range(rng.randint(1, 3)):
        path = rng.choice(paths)
        holder: Any = ui
        try:
            for key in path[:-1]:
                holder = holder[key]
            if isinstance(holder, dict) and rng.random() < 0.3:
                del holder[path[-1]]
            else:
                holder[path[-1]] = rng.choice(JUNK)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier damage removed this path


@pytest.mark.parametrize("name", sorted(p.name for p in DATA.glob("*.json")))
def test_ui_conversion_damaged_files_convert_or_fail_clearly(name):
    registry = arithmetic.fresh_registry()
    info = registry.object_info()
    original = json.loads((DATA / name).read_text())
    rng = random.Random(name)
    for _ in range(300):
        ui = json.loads(json.dumps(original))
        _damage(ui, rng)
        try:
            prompt = ui_to_api(ui, info)
        except WorkflowFormatError as exc:
            assert str(exc) and exc.code == "invalid_ui_workflow"
            continue
        validate_prompt(prompt, registry)  # whatever converts can be validated (it may be invalid)


def test_ui_conversion_malformed_node_error_names_node_and_field():
    ui = json.loads((DATA / "basic_v1.json").read_text())
    node = ui["nodes"][0]
    node["inputs"] = [{"name": ["not", "a", "name"], "link": None}]
    with pytest.raises(WorkflowFormatError) as caught:
        ui_to_api(ui, arithmetic.fresh_registry().object_info())
    message = str(caught.value)
    assert f"node {node['id']} ({node['type']})" in message
    assert "inputs.0.name" in message
