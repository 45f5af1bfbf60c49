"""The guidance and enhancement nodes' /object_info entries against ComfyUI's facts.

data/comfyui_guidance_node_facts.json was transcribed from ComfyUI 0.3.64's source (the nodes' input
declarations and display-name table); the comparison is the one test_node_facts applies.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine import Registry
from nodes.pack import register
from tests.nodes import test_node_facts

FACTS = json.loads((Path(__file__).parent / "data" / "comfyui_guidance_node_facts.json").read_text())["nodes"]


@pytest.fixture(scope="module")
def registry() -> Registry:
    """The builtin node pack."""
    reg = Registry()
    register(reg)
    return reg


@pytest.mark.parametrize("node_id", sorted(FACTS))
def test_guidance_node_object_info_matches_comfyui(
    node_id: str, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(test_node_facts, "FACTS", FACTS)
    test_node_facts.test_object_info_matches_comfyui(node_id, registry)
