"""Loading ComfyUI-style packs: nodes registered with their schema, failures reported, shims removed."""

from __future__ import annotations

import sys

from engine import Registry
from nodes.comfy_compat.loader import load_custom_nodes
from tests.nodes.comfy_compat.conftest import PACKS, make_env


def packs_by_name(registry):
    return {info.name: info for info in registry.packs}


def test_loader_registers_v1_and_v3_nodes_and_reports_failed_packs(packs_env):
    registry, _ = packs_env
    packs = packs_by_name(registry)
    assert packs["dg_test_v1"].error is None and "V1LazySwitch" in packs["dg_test_v1"].nodes
    assert packs["dg_test_v1"].kind == "comfyui-v1" and packs["dg_test_v3"].kind == "comfyui-v3"
    assert "V3Countdown" in registry and "V1Countdown" in registry
    assert "SyntaxError" in packs["broken_pack"].error
    assert "comfy.sd is part of ComfyUI's internals" in packs["needs_internals"].error


def test_loader_web_directory_is_found(packs_env):
    registry, _ = packs_env
    web = packs_by_name(registry)["dg_test_v1"].web_dir
    assert web is not None and (web / "js" / "dg_test.js").is_file()


def test_object_info_follows_comfyui_reading_of_v1_classes(packs_env):
    registry, _ = packs_env
    info = registry.node_info("V1Int")
    assert info["display_name"] == "V1 Integer" and info["category"] == "dg_test"
    assert info["input"]["required"]["value"][1]["max"] == 100
    assert info["output_name"] == ["value"] and info["output_tooltips"] == ["the number given"]
    assert info["python_module"] == "custom_nodes.dg_test_v1" and info["search_aliases"] == [
        "number",
        "integer",
    ]
    fresh = registry.node_info("V1Fresh")
    assert fresh["deprecated"] is True and fresh["experimental"] is True
    assert registry.node_info("V1Range")["output_is_list"] == [True]
    assert registry.node_info("V1Files")["input"]["required"]["ckpt_name"][0] == ["tiny.safetensors"]


def test_object_info_of_v3_nodes_comes_from_the_schema(packs_env):
    registry, _ = packs_env
    info = registry.node_info("V3Int")
    assert info["display_name"] == "V3 Integer" and info["description"] == "Outputs an integer."
    assert info["input"]["required"]["value"] == [
        "INT",
        {"default": 1, "min": -10, "max": 10, "tooltip": "a number"},
    ]
    assert info["output_tooltips"] == ["the number given"]
    assert registry.node_info("V3LazySwitch")["input"]["required"]["on_true"][1]["lazy"] is True
    assert registry.node_info("V3Picky")["input"]["required"]["mode"][0] == ["a", "b"]


def test_shims_are_gone_after_loading(packs_env):
    for name in ("folder_paths", "comfy", "comfy.utils", "comfy_api.latest", "node_helpers"):
        assert name not in sys.modules
    assert not hasattr(sys.modules["nodes"], "MAX_RESOLUTION")


def test_loader_refuses_to_shadow_a_real_comfyui(tmp_path, monkeypatch):
    fake = tmp_path / "comfyui_root"
    fake.mkdir()
    (fake / "folder_paths.py").write_text("# a real ComfyUI's module\n")
    monkeypatch.syspath_prepend(str(fake))
    registry = Registry()
    infos = load_custom_nodes(registry, [PACKS], make_env(tmp_path))
    assert infos and all("not shadowed" in info.error for info in infos)
    assert "V1Int" not in registry


def test_ui_format_workflows_with_pack_nodes_convert_both_ways(packs_env):
    from engine.formats.ui_export import api_to_ui
    from engine.formats.workflow import load_workflow

    registry, _ = packs_env
    info = registry.object_info()
    prompt = {
        "1": {"class_type": "V1Int", "inputs": {"value": 7}},
        "2": {"class_type": "V3Countdown", "inputs": {"n": 2, "acc": ["1", 0]}},
        "3": {"class_type": "V1Picky", "inputs": {"value": ["2", 0], "mode": "loud"}},
        "4": {"class_type": "V3Show", "inputs": {"value": ["3", 0]}},
    }
    loaded = load_workflow(api_to_ui(prompt, info), info)
    assert loaded.prompt["2"]["inputs"] == {"n": 2, "acc": ["1", 0]}
    assert loaded.prompt["3"]["inputs"] == {"value": ["2", 0], "mode": "loud"}
