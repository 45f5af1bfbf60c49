"""`diffgraph run` with custom-node packs: --custom-nodes, the default folder, yaml config, disabling."""

from __future__ import annotations

import json
import shutil

from tests.nodes.comfy_compat.conftest import PACKS

PROMPT = {
    "1": {"class_type": "V1Range", "inputs": {"count": 3}},
    "2": {"class_type": "V3AsyncDouble", "inputs": {"value": ["1", 0]}},
    "3": {"class_type": "V1Sum", "inputs": {"xs": ["2", 0]}},
    "4": {"class_type": "V1Countdown", "inputs": {"n": 2, "acc": ["3", 0]}},
    "5": {"class_type": "V1Show", "inputs": {"value": ["4", 0]}},
}


def write_prompt(project):
    (project / "packs.json").write_text(json.dumps(PROMPT), encoding="utf-8")


def test_run_with_custom_nodes_folder_runs_v1_and_v3_nodes(cli, project):
    write_prompt(project)
    result = cli("run", "packs.json", "--custom-nodes", str(PACKS), "--json")
    assert result.code == 0, result.err
    outputs = result.json()["items"][0]["outputs"]
    assert outputs["5"]["ui"]["text"] == ["8"]  # (0 + 2 + 4) + 2 rounds


def test_run_loads_default_custom_nodes_beside_models(cli, project):
    write_prompt(project)
    shutil.copytree(PACKS / "dg_test_v1", project / "custom_nodes" / "dg_test_v1")
    shutil.copytree(PACKS / "dg_test_v3", project / "custom_nodes" / "dg_test_v3")
    result = cli("run", "packs.json", "--json")
    assert result.code == 0, result.err
    result = cli("run", "packs.json", "--disable-all-custom-nodes")
    assert result.code != 0 and "V1Range" in result.err


def test_run_reads_custom_nodes_from_extra_model_paths_yaml(cli, project):
    write_prompt(project)
    config = project / "extra_model_paths.yaml"
    config.write_text(f"comfyui:\n  base_path: {PACKS.parent}\n  custom_nodes: packs/\n", encoding="utf-8")
    result = cli("run", "packs.json", "--extra-model-paths-config", str(config), "--json")
    assert result.code == 0, result.err


def test_serve_composition_loads_packs_named_on_its_command_line(tmp_path):
    import argparse

    from diffgraph.commands.serve import with_custom_nodes
    from diffgraph.custom_nodes import add_custom_node_options
    from engine import ModelPaths
    from server.main import add_serve_arguments

    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    add_custom_node_options(parser)
    args = parser.parse_args(["--base-dir", str(tmp_path), "--custom-nodes", str(PACKS)])
    from engine import Registry

    build = with_custom_nodes(lambda paths, input_dir: Registry(), args)
    registry = build(ModelPaths(tmp_path / "models"), tmp_path / "input")
    assert "V1Int" in registry and {p.name for p in registry.packs} >= {"dg_test_v1", "dg_test_v3"}
