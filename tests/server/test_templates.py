"""The Templates dialog's files: our ready workflows with thumbnails, runnable official ones, first run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine import Environment, ModelPaths
from server.templates import OFFICIAL_PACKAGE, TemplateLibrary, node_types, official_templates_dir

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def real_server(make_server, folders):
    from nodes.pack import build_registry

    models = folders.base / "models"
    (models / "checkpoints").mkdir(parents=True)
    (models / "checkpoints" / "mine.safetensors").write_bytes(b"{}")
    env = Environment(
        folders.base / "output", folders.base / "temp", folders.base / "input", None, ModelPaths(models)
    )
    return make_server(build_registry(env.model_paths, env.input_dir), env)


def test_templates_index_lists_our_workflows_with_thumbnails(real_server):
    with real_server.client() as http:
        index = http.get("/templates/index.json")
        ours = index.json()[0]
        first = ours["templates"][0]
        workflow = http.get(f"/templates/{first['name']}.json")
        thumbnail = http.get(f"/templates/{first['name']}-1.{first['mediaSubtype']}")
        missing = http.get("/templates/nope.json")
        escape = http.get("/templates/..%2Fpyproject.toml")
    assert index.headers["cache-control"] == "no-cache"
    assert ours["moduleName"] == "default" and ours["title"] == "diffgraph"
    assert first["name"] == "txt2img_sd15"
    assert {t["name"] for t in ours["templates"]} == {
        p.stem for p in (REPO / "workflows" / "ui").glob("*.json")
    }
    assert "models/checkpoints/v1-5-pruned-emaonly.safetensors (missing)" in first["description"]
    assert workflow.status_code == 200 and workflow.json()["nodes"]
    assert thumbnail.status_code == 200 and thumbnail.content[8:12] == b"WEBP"
    assert missing.status_code == 404 and escape.status_code == 404


def test_every_ready_ui_workflow_has_its_thumbnail():
    # `python -m diffgraph.thumbnails` draws them; a workflow added without one shows a broken picture.
    ui = REPO / "workflows" / "ui"
    missing = [p.stem for p in ui.glob("*.json") if not (ui / "thumbnails" / f"{p.stem}-1.webp").is_file()]
    assert not missing, f"run python -m diffgraph.thumbnails; no thumbnail for {missing}"


@pytest.mark.skipif(official_templates_dir() is None, reason=f"{OFFICIAL_PACKAGE} is not installed")
def test_templates_official_only_those_whose_nodes_we_have(real_server):
    known = set(real_server.state.registry)
    with real_server.client() as http:
        categories = http.get("/templates/index.json").json()[1:]
        official = [t for c in categories for t in c["templates"]]
        workflow = http.get(f"/templates/{official[0]['name']}.json").json()
    assert official, "some official templates use only nodes diffgraph has"
    assert node_types(workflow) <= known
    library = TemplateLibrary(real_server.state.registry, None)
    index_file = json.loads((library.official_dir / "index.json").read_text())
    assert sum(len(c["templates"]) for c in index_file) > len(official)  # the rest were left out
    assert any("Needs models/" in t["description"] for t in official)


def test_templates_first_run_uses_a_checkpoint_that_is_here(real_server):
    with real_server.client() as http:
        workflow = http.get("/templates/first_run.json").json()
        listed = http.get("/api/extensions").json()
        script = http.get(listed[-1])
        texts = http.get("/api/i18n").json()
    loader = next(n for n in workflow["nodes"] if n["type"] == "CheckpointLoaderSimple")
    assert loader["widgets_values"][0] == "mine.safetensors"
    assert "/extensions/diffgraph/first_run.js" in listed
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    warning = texts["en"]["loadWorkflowWarning"]
    assert "diffgraph" in warning["newerVersionRequired"] and "newer" not in warning["newerVersionRequired"]
