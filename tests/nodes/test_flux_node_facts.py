"""FluxGuidance, FluxDisableGuidance, ModelSamplingFlux, EmptySD3LatentImage and UNETLoader vs ComfyUI's facts.

data/comfyui_flux_node_facts.json was made by data/make_node_facts.py (ComfyUI 0.3.64) with
comfy_extras.nodes_flux, nodes_model_advanced and nodes_sd3 added to its EXTRA_MODULES (the file list of
UNETLoader.unet_name dropped: it depends on the models folder); the checks are
test_node_facts.py's.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.nodes import test_node_facts as base
from tests.nodes.test_node_facts import registry  # noqa: F401  (the fixture)

FLUX_FACTS = json.loads((Path(__file__).parent / "data" / "comfyui_flux_node_facts.json").read_text())[
    "nodes"
]


@pytest.mark.parametrize("node_id", sorted(FLUX_FACTS))
def test_flux_node_object_info_matches_comfyui(node_id, registry, monkeypatch):  # noqa: F811
    monkeypatch.setitem(base.FACTS, node_id, FLUX_FACTS[node_id])
    base.test_object_info_matches_comfyui(node_id, registry)
