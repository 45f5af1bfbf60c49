"""Every latent/image/mask/primitive/string node's /object_info entry against ComfyUI's facts.

data/comfyui_node_facts.json holds, per node id, ComfyUI 0.3.64's input names and order, types, combo
options, defaults, bounds and steps, and output types and names (data/make_node_facts.py made it from
ComfyUI's own classes; comfyui_node_facts_model_patches.json the same for the model patch and merge
nodes, made with that script's functions and nodes_freelunch, nodes_pag, nodes_sag,
nodes_model_advanced and nodes_model_merging added to its modules). Workflows saved by ComfyUI only
load unchanged when all of these agree.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from engine import Registry, object_info
from nodes.pack import register

# comfyui_node_facts.json plus per-family files (comfyui_node_facts_<family>.json) in the same format.
FACTS = {
    node_id: fact
    for path in sorted((Path(__file__).parent / "data").glob("comfyui_node_facts*.json"))
    for node_id, fact in json.loads(path.read_text())["nodes"].items()
}


@pytest.fixture(scope="module")
def registry() -> Registry:
    """The builtin node pack."""
    reg = Registry()
    register(reg)
    return reg


def _our_rows(info: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for section in ("required", "optional"):
        for name in info["input_order"].get(section, []):
            entry = info["input"][section][name]
            kind, options = entry[0], (entry[1] if len(entry) > 1 else {})
            rows.append({"section": section, "name": name, "kind": kind, "options": options})
    return rows


@pytest.mark.parametrize("node_id", sorted(FACTS))
def test_object_info_matches_comfyui(node_id: str, registry: Registry) -> None:
    """Names, order, sections, types, options, defaults, bounds, steps and outputs equal ComfyUI's."""
    node_cls = registry.get(node_id)
    assert node_cls is not None, f"{node_id} is not registered"
    facts = FACTS[node_id]
    info = object_info(node_cls)
    ours = _our_rows(info)
    assert [(r["section"], r["name"]) for r in ours] == [(f["section"], f["name"]) for f in facts["inputs"]]
    for row, fact in zip(ours, facts["inputs"], strict=True):
        where = f"{node_id}.{row['name']}"
        options = row["options"]
        if fact["type"] == "COMBO":
            assert isinstance(row["kind"], list), f"{where}: expected a combo"
            if "options" in fact:
                assert row["kind"] == fact["options"], f"{where}: combo options"
                # Without a declared default the client shows the first option, which must be ours.
                assert options.get("default", fact["options"][0]) == fact.get("default", fact["options"][0])
        else:
            assert row["kind"] == fact["type"], f"{where}: type"
        for key in ("default", "min", "max", "step", "control_after_generate", "image_upload"):
            if key in fact:
                assert options.get(key) == fact[key], f"{where}: {key} {options.get(key)!r} != {fact[key]!r}"
        if fact.get("multiline"):
            assert options.get("multiline") is True, f"{where}: multiline"
    assert info["output"] == facts["output"], f"{node_id}: output types"
    assert info["output_name"] == facts["output_name"], f"{node_id}: output names"
    # ComfyUI's newer-style nodes may send no display name (the client labels them itself).
    if facts["display_name"] is not None:
        assert info["display_name"] == facts["display_name"], f"{node_id}: display name"
    assert info["category"] == facts["category"], f"{node_id}: category"
