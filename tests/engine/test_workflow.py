"""Loading and saving API-format workflows."""

from __future__ import annotations

import json

import pytest

from engine import WorkflowFormatError
from engine.formats.workflow import is_link, load_workflow, save_api


def test_workflow_link_shape_follows_comfyui():
    assert is_link(["4", 0]) and is_link(["4", 1.0])
    assert not is_link([4, 0]) and not is_link(["4", True]) and not is_link(["4", 0, 1])


def test_workflow_malformed_json_names_file_and_line(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"1": {"class_type": "X",\n "inputs": }')
    with pytest.raises(WorkflowFormatError, match=r"bad.json is not valid JSON: .* line 2"):
        load_workflow(path)


def test_workflow_missing_file(tmp_path):
    with pytest.raises(WorkflowFormatError, match="does not exist"):
        load_workflow(tmp_path / "nope.json")


def test_workflow_save_and_load_round_trip_wraps_list_constants(tmp_path):
    prompt = {"1": {"class_type": "X", "inputs": {"size": [1, 2], "src": ["2", 0]}, "_meta": {"title": "t"}}}
    path = tmp_path / "w.json"
    save_api(prompt, path)
    saved = json.loads(path.read_text())
    assert saved["1"]["inputs"]["size"] == {"__value__": [1, 2]} and saved["1"]["inputs"]["src"] == ["2", 0]
    assert load_workflow(path).prompt == saved


def test_workflow_submission_body_keeps_ui_workflow():
    body = {
        "prompt": {"1": {"class_type": "X", "inputs": {}}},
        "extra_data": {"extra_pnginfo": {"workflow": {"nodes": []}}},
    }
    workflow = load_workflow(body)
    assert workflow.ui == {"nodes": []}
    assert workflow.extra_data() == {"extra_pnginfo": {"workflow": {"nodes": []}}}
