"""UI (litegraph) workflow -> API prompt conversion on hand-written files, and the API -> UI round trip."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from engine import WorkflowFormatError
from engine.formats.ui_workflow import api_to_ui, is_ui_format, ui_to_api
from tests.stub_pack.comfy_shapes import ui_registry

DATA = Path(__file__).parent / "data" / "ui"


@pytest.fixture
def object_info() -> dict[str, Any]:
    return ui_registry().object_info()


def load(name: str) -> dict[str, Any]:
    return json.loads((DATA / name).read_text(encoding="utf-8"))


def convert(name: str, object_info: dict[str, Any]) -> dict[str, Any]:
    return ui_to_api(load(name), object_info)


def inputs_of(prompt: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {node_id: node["inputs"] for node_id, node in prompt.items()}


BASIC = {
    "1": {
        "class_type": "LoadModel",
        "inputs": {"ckpt_name": "b.safetensors"},
        "_meta": {"title": "Load Model"},
    },
    "2": {"class_type": "TextEncode", "inputs": {"text": "a cat"}, "_meta": {"title": "Positive"}},
    "3": {
        "class_type": "EmptyLatent",
        "inputs": {"width": 640, "height": 480, "batch_size": 2},
        "_meta": {"title": "EmptyLatent"},
    },
    "4": {
        "class_type": "Sampler",
        "inputs": {
            "model": ["1", 0],
            "seed": 123,
            "steps": 30,
            "cfg": 6.5,
            "sampler_name": "dpmpp_2m",
            "positive": ["2", 0],
            "latent_image": ["3", 0],
            "denoise": 0.75,
            "noise_scale": 0.5,
        },
        "_meta": {"title": "Sampler"},
    },
    "5": {"class_type": "Decode", "inputs": {"samples": ["4", 0]}, "_meta": {"title": "Decode"}},
    "6": {
        "class_type": "SaveImage",
        "inputs": {"images": ["5", 0], "filename_prefix": "out/cat"},
        "_meta": {"title": "Save Image"},
    },
}


def test_is_ui_format_tells_ui_from_api_format():
    assert is_ui_format(load("basic_v04.json"))
    assert not is_ui_format(BASIC)
    assert not is_ui_format([1, 2])


def test_ui_to_api_maps_positional_widgets_and_links(object_info):
    assert convert("basic_v04.json", object_info) == BASIC


def test_ui_to_api_reads_v1_object_links_like_v04_arrays(object_info):
    assert convert("basic_v1.json", object_info) == BASIC


def test_ui_to_api_drops_control_after_generate_entries(object_info):
    prompt = convert("control_after_generate.json", object_info)
    # noise_seed by name, offset by option, seed opted out (option false), sampler combo with control.
    expected = {"noise_seed": 11, "offset": 5, "seed": 9, "sampler": "ddim", "strength": 0.5}
    assert prompt["1"]["inputs"] == expected
    # A file saved without the hidden entries still lines up.
    assert prompt["2"]["inputs"] == expected


def test_ui_to_api_drops_upload_entry(object_info):
    prompt = convert("upload.json", object_info)
    assert prompt["1"]["inputs"] == {"image": "dog.png"}
    assert prompt["4"]["inputs"] == {"file": "clip.mp4", "frames": 24}


def test_ui_to_api_linked_widget_takes_link_and_keeps_later_positions(object_info):
    prompt = convert("linked_widget.json", object_info)
    assert prompt["4"]["inputs"] == {
        "seed": ["1", 0],
        "steps": ["2", 0],
        "cfg": 7.0,
        "sampler_name": "euler",
        "denoise": 1.0,
        "noise_scale": 1.0,
    }


def test_ui_to_api_reroute_chain_passes_through(object_info):
    prompt = convert("reroute_primitive.json", object_info)
    assert set(prompt) == {"1", "4", "5"}
    assert prompt["4"]["inputs"]["model"] == ["1", 0]
    assert prompt["5"]["inputs"]["model"] == ["1", 0]


def test_ui_to_api_primitive_node_value_reaches_every_target(object_info):
    prompt = convert("reroute_primitive.json", object_info)
    assert prompt["4"]["inputs"]["seed"] == 42
    assert prompt["5"]["inputs"]["seed"] == 42
    assert prompt["5"]["inputs"]["steps"] == 20


def test_ui_to_api_drops_notes(object_info):
    prompt = convert("note_muted.json", object_info)
    assert "40" not in prompt and "41" not in prompt


def test_ui_to_api_drops_muted_nodes_and_links_from_them(object_info):
    prompt = convert("note_muted.json", object_info)
    assert set(prompt) == {"2", "3", "6"}
    assert prompt["2"]["inputs"] == {}
    assert prompt["3"]["inputs"]["images"] == ["2", 0]
    # The link replaced the widget value, then went with its muted origin (as in the frontend).
    assert "seed" not in prompt["6"]["inputs"]


def test_ui_to_api_bypass_follows_same_slot(object_info):
    prompt = convert("bypass.json", object_info)
    assert "2" not in prompt
    assert prompt["3"]["inputs"]["images"] == ["1", 0]


def test_ui_to_api_bypass_follows_type_match_when_same_slot_differs(object_info):
    prompt = convert("bypass.json", object_info)
    assert "4" not in prompt
    assert prompt["5"]["inputs"]["images"] == ["1", 0]


def test_ui_to_api_bypass_follows_first_compatible_list_type(object_info):
    prompt = convert("bypass.json", object_info)
    assert "9" not in prompt
    assert prompt["11"]["inputs"]["images"] == ["10", 0]


def test_ui_to_api_bypass_without_connected_input_omits_input(object_info):
    prompt = convert("bypass.json", object_info)
    assert prompt["7"]["inputs"] == {"filename_prefix": "nothing"}


def test_ui_to_api_flattens_nested_subgraphs_with_colon_ids(object_info):
    prompt = convert("subgraph_nested.json", object_info)
    assert set(prompt) == {"1", "2", "3", "12"} | {
        f"{i}:{inner}" for i in (10, 11) for inner in ("4", "5", "6:1", "6:2")
    }
    sampler = prompt["10:5"]["inputs"]
    assert sampler["model"] == ["1", 0] and sampler["latent_image"] == ["2", 0]
    assert sampler["positive"] == ["10:4", 0]
    assert prompt["10:6:1"]["inputs"] == {"samples": ["10:5", 0]}
    assert prompt["10:6:2"]["inputs"] == {"image": ["10:6:1", 0]}
    assert prompt["3"]["inputs"]["images"] == ["10:6:2", 0]
    assert prompt["12"]["inputs"]["images"] == ["11:6:2", 0]
    assert prompt["10:4"]["_meta"]["title"] == "Text Encode"


def test_ui_to_api_subgraph_instance_widget_feeds_inner_node(object_info):
    prompt = convert("subgraph_nested.json", object_info)
    assert prompt["10:5"]["inputs"]["steps"] == 33  # the instance's promoted widget
    assert prompt["11:5"]["inputs"]["steps"] == 20  # no instance value: the inner widget stays


def test_ui_to_api_subgraph_proxy_widgets_override_inner_widgets(object_info):
    ui = load("subgraph_nested.json")
    instance = ui["nodes"][2]
    instance["properties"] = {"proxyWidgets": [["-1", "steps"], ["4", "text"]]}
    instance["widgets_values"] = [44, "proxied text"]
    prompt = ui_to_api(ui, object_info)
    assert prompt["10:5"]["inputs"]["steps"] == 44
    assert prompt["10:4"]["inputs"]["text"] == "proxied text"
    assert prompt["11:4"]["inputs"]["text"] == "inner text"


def test_ui_to_api_bypass_inside_subgraph_passes_through(object_info):
    ui = load("subgraph_nested.json")
    ui["definitions"]["subgraphs"][1]["nodes"][1]["mode"] = 4  # Invert inside the nested subgraph
    prompt = ui_to_api(ui, object_info)
    assert "10:6:2" not in prompt
    assert prompt["3"]["inputs"]["images"] == ["10:6:1", 0]


def test_ui_to_api_muted_subgraph_instance_drops_its_nodes(object_info):
    ui = load("subgraph_nested.json")
    ui["nodes"][2]["mode"] = 2
    prompt = ui_to_api(ui, object_info)
    assert not any(node_id.startswith("10:") for node_id in prompt)
    assert "images" not in prompt["3"]["inputs"]


def test_ui_to_api_subgraph_wiring_input_straight_to_output(object_info):
    ui = load("subgraph_nested.json")
    inner_b = ui["definitions"]["subgraphs"][1]
    inner_b["nodes"] = []
    inner_b["links"] = [{"id": 22, "origin_id": -10, "origin_slot": 0, "target_id": -20, "target_slot": 0}]
    prompt = ui_to_api(ui, object_info)
    assert prompt["3"]["inputs"]["images"] == ["10:5", 0]


def test_ui_to_api_reads_widgets_values_object(object_info):
    prompt = convert("object_widgets.json", object_info)
    assert prompt["1"]["inputs"] == {
        "seed": 5,
        "steps": 12,
        "cfg": 3.0,
        "sampler_name": "euler",
        "denoise": 0.5,
    }


def test_ui_to_api_wraps_list_constants(object_info):
    prompt = convert("object_widgets.json", object_info)
    assert prompt["2"]["inputs"] == {"points": {"__value__": [[0, 0], [1, 1]]}}


def test_ui_to_api_passes_unknown_node_through_for_validation(object_info):
    from engine.validation import validate_prompt

    prompt = convert("unknown_node.json", object_info)
    # Widget values cannot be named without a schema: only links survive.
    assert prompt["2"] == {
        "class_type": "MysteryNode",
        "inputs": {"image": ["1", 0]},
        "_meta": {"title": "MysteryNode"},
    }
    assert prompt["3"]["inputs"]["images"] == ["2", 0]
    result = validate_prompt(prompt, ui_registry())
    assert not result.ok
    assert "MysteryNode" in result.error["message"]
    assert "2" in result.node_errors


def test_ui_to_api_missing_link_names_node_and_input(object_info):
    ui = load("upload.json")
    ui["links"] = ui["links"][1:]
    with pytest.raises(WorkflowFormatError, match=r"node 2 \(Invert\) input 'image'.*link 1"):
        ui_to_api(ui, object_info)


def test_ui_to_api_rejects_api_prompt(object_info):
    with pytest.raises(WorkflowFormatError, match="nodes"):
        ui_to_api(BASIC, object_info)


def test_ui_to_api_reroute_loop_is_an_error(object_info):
    ui = {
        "version": 0.4,
        "nodes": [
            {"id": 1, "type": "Reroute", "inputs": [{"name": "", "type": "*", "link": 2}], "outputs": []},
            {"id": 2, "type": "Reroute", "inputs": [{"name": "", "type": "*", "link": 1}], "outputs": []},
            {"id": 3, "type": "Decode", "inputs": [{"name": "samples", "type": "LATENT", "link": 3}]},
        ],
        "links": [[1, 1, 0, 2, 0, "*"], [2, 2, 0, 1, 0, "*"], [3, 2, 0, 3, 0, "LATENT"]],
    }
    with pytest.raises(WorkflowFormatError, match="loop"):
        ui_to_api(ui, object_info)


def test_ui_to_api_subgraph_containing_itself_is_an_error(object_info):
    ui = load("subgraph_nested.json")
    inner_b = ui["definitions"]["subgraphs"][1]
    inner_b["nodes"][0]["type"] = inner_b["id"]
    with pytest.raises(WorkflowFormatError, match="contains itself"):
        ui_to_api(ui, object_info)


def test_load_workflow_converts_ui_file(object_info):
    from engine.formats.workflow import load_workflow

    workflow = load_workflow(DATA / "basic_v04.json", object_info)
    assert workflow.prompt == BASIC
    assert workflow.extra_data()["extra_pnginfo"]["workflow"]["version"] == 0.4


# Files whose prompts give every widget input, as the frontend writes them (see the default test below).
ROUND_TRIP_FILES = [
    "basic_v04.json",
    "control_after_generate.json",
    "upload.json",
    "linked_widget.json",
    "reroute_primitive.json",
    "bypass.json",
    "subgraph_nested.json",
]


@pytest.mark.parametrize("name", ROUND_TRIP_FILES)
def test_api_to_ui_round_trips_to_identical_prompt(name, object_info):
    prompt = convert(name, object_info)
    ui = json.loads(json.dumps(api_to_ui(prompt, object_info)))
    assert is_ui_format(ui)
    assert ui_to_api(ui, object_info) == prompt


def test_api_to_ui_round_trips_linked_widget_and_list_constant(object_info):
    prompt = copy.deepcopy(BASIC)
    prompt["7"] = {"class_type": "SeedSource", "inputs": {"value": 5}, "_meta": {"title": "seed"}}
    prompt["4"]["inputs"]["seed"] = ["7", 0]
    prompt["8"] = {
        "class_type": "Scale",
        "inputs": {"image": ["5", 0], "points": {"__value__": [1, 2]}},
        "_meta": {"title": "Scale"},
    }
    assert ui_to_api(api_to_ui(prompt, object_info), object_info) == prompt


def test_api_to_ui_writes_frontend_widget_entries(object_info):
    ui = api_to_ui(convert("upload.json", object_info) | BASIC, object_info)
    by_id = {node["id"]: node for node in ui["nodes"]}
    assert by_id[4]["widgets_values"] == [123, "fixed", 30, 6.5, "dpmpp_2m", 0.75, 0.5]
    assert by_id[1]["widgets_values"] == ["b.safetensors"]
    ui = api_to_ui(convert("upload.json", object_info), object_info)
    by_id = {node["id"]: node for node in ui["nodes"]}
    assert by_id[1]["widgets_values"] == ["dog.png", "image"]
    assert by_id[4]["widgets_values"] == ["clip.mp4", 24, "image"]


def test_api_to_ui_lays_nodes_out_left_to_right_by_depth(object_info):
    ui = api_to_ui(BASIC, object_info)
    x = {node["id"]: node["pos"][0] for node in ui["nodes"]}
    assert x[1] == x[2] == x[3] < x[4] < x[5] < x[6]
    assert ui["version"] == 0.4 and ui["last_node_id"] == 6 and ui["last_link_id"] == len(ui["links"]) == 5
    assert all(len(link) == 6 for link in ui["links"])
    sampler = next(node for node in ui["nodes"] if node["id"] == 4)
    assert [slot["name"] for slot in sampler["inputs"]] == ["model", "positive", "latent_image"]
    assert sampler["outputs"][0]["links"] == [4]


def test_api_to_ui_missing_widget_gets_schema_default(object_info):
    prompt = {"1": {"class_type": "EmptyLatent", "inputs": {"width": 64}, "_meta": {"title": "e"}}}
    back = ui_to_api(api_to_ui(prompt, object_info), object_info)
    assert back["1"]["inputs"] == {"width": 64, "height": 512, "batch_size": 1}
    # The muted seed source left the sampler without a seed; the UI shows (and sends) the default.
    muted = convert("note_muted.json", object_info)
    back = ui_to_api(api_to_ui(muted, object_info), object_info)
    assert back["6"]["inputs"] == muted["6"]["inputs"] | {"seed": 0}


def _big_ui(count: int) -> dict[str, Any]:
    """A chain LoadModel -> (Reroute, Sampler)* with every fourth sampler bypassed."""
    nodes: list[dict[str, Any]] = [
        {
            "id": 1,
            "type": "EmptyLatent",
            "inputs": [],
            "widgets_values": [512, 512, 1],
            "outputs": [{"name": "LATENT", "type": "LATENT", "links": [1]}],
        }
    ]
    links = []
    for i in range(2, count + 1):
        links.append([i - 1, i - 1, 0, i, 0, "LATENT"])
        if i % 2:
            nodes.append(
                {
                    "id": i,
                    "type": "Reroute",
                    "inputs": [{"name": "", "type": "*", "link": i - 1}],
                    "outputs": [{"name": "", "type": "LATENT", "links": [i]}],
                }
            )
        else:
            nodes.append(
                {
                    "id": i,
                    "type": "Decode",
                    "mode": 4 if i % 8 == 0 else 0,
                    "inputs": [{"name": "samples", "type": "LATENT", "link": i - 1}],
                    "outputs": [{"name": "IMAGE", "type": "LATENT", "links": [i]}],
                }
            )
    return {"version": 0.4, "nodes": nodes, "links": links}


def test_ui_to_api_converts_1000_nodes_through_reroutes_and_bypasses(object_info):
    # No time limit here: on shared machines a timed assertion fails for reasons outside the code.
    prompt = ui_to_api(_big_ui(1000), object_info)
    assert len(prompt) == 1 + 500 - 125
    assert prompt["6"]["inputs"]["samples"] == ["4", 0]  # through a reroute
    assert prompt["10"]["inputs"]["samples"] == ["6", 0]  # through a reroute, a bypass and a reroute


def test_ui_to_api_consumes_legacy_boolean_control_entry(object_info):
    ui = load("control_after_generate.json")
    values = ui["nodes"][0]["widgets_values"]
    # Early clients saved the control entry after a seed as a true/false toggle.
    ui["nodes"][0]["widgets_values"] = [
        v if v not in ("fixed", "randomize", "increment") else True for v in values
    ]
    assert (
        ui_to_api(ui, object_info)["1"]["inputs"]
        == ui_to_api(load("control_after_generate.json"), object_info)["1"]["inputs"]
    )


MASK_LOADER_INFO = {
    "MaskLoader": {
        "input": {
            "required": {
                "image": [["a.png", "b.png"], {"image_upload": True}],
                "channel": [["alpha", "red"], {}],
            },
            "optional": {"strength": ["FLOAT", {"default": 1.0}]},
        },
        "input_order": {"required": ["image", "channel"], "optional": ["strength"]},
        "output": ["MASK"],
        "output_name": ["MASK"],
        "name": "MaskLoader",
        "display_name": "MaskLoader",
    }
}


def test_ui_to_api_upload_entry_follows_every_ordered_widget():
    # The client adds its upload button as an input input_order does not name, so it comes last.
    ui = {
        "nodes": [{"id": 1, "type": "MaskLoader", "widgets_values": ["b.png", "red", 0.5, "image"]}],
        "links": [],
    }
    expected = {"image": "b.png", "channel": "red", "strength": 0.5}
    assert ui_to_api(ui, MASK_LOADER_INFO)["1"]["inputs"] == expected
    exported = api_to_ui({"1": {"class_type": "MaskLoader", "inputs": expected}}, MASK_LOADER_INFO)
    assert exported["nodes"][0]["widgets_values"] == ["b.png", "red", 0.5, "image"]
    # Without an input_order the button follows the required inputs only.
    unordered = {
        "MaskLoader": {k: v for k, v in MASK_LOADER_INFO["MaskLoader"].items() if k != "input_order"}
    }
    legacy = {
        "nodes": [{"id": 1, "type": "MaskLoader", "widgets_values": ["b.png", "red", "image", 0.5]}],
        "links": [],
    }
    assert ui_to_api(legacy, unordered)["1"]["inputs"] == expected
