"""`diffgraph validate`, `convert`, `nodes`, and running UI-format and PNG-embedded workflows."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

from PIL import Image as PILImage

from diffgraph.cli import main
from engine.formats.media_metadata import png_info
from tests.stub_pack import txt2img


def write_ui_workflow(cli, project: Path) -> Path:
    """The txt2img prompt converted to a UI-format file by `diffgraph convert`."""
    result = cli("convert", "workflow.json", "-o", "ui.json")
    assert result.code == 0, result.err
    return project / "ui.json"


def test_validate_ok_prints_outputs(cli):
    result = cli("validate", "workflow.json")
    assert result.code == 0
    assert "ok: 7 nodes; outputs #9 SaveImage" in result.out


def test_validate_reports_every_problem_with_node_and_input(cli):
    result = cli("validate", "workflow.json", "--set", "KSampler.steps=0", "--set", "5.width=1")
    assert result.code == 1
    lines = [line for line in result.err.splitlines() if line.startswith("  #")]
    assert len(lines) == 2
    assert any("#3 KSampler" in line and "steps" in line for line in lines)
    assert any("#5 EmptyLatentImage" in line and "width" in line for line in lines)


def test_validate_json_gives_comfyui_node_errors(cli):
    result = cli("validate", "workflow.json", "--set", "KSampler.sampler_name=magic", "--json")
    assert result.code == 1
    doc = result.json()
    assert doc["ok"] is False and doc["runnable"] is False
    errors = doc["node_errors"]["3"]
    assert errors["class_type"] == "KSampler" and errors["dependent_outputs"] == ["9"]
    assert errors["errors"][0]["type"] == "value_not_in_list"
    assert errors["errors"][0]["extra_info"]["input_name"] == "sampler_name"


def test_convert_round_trip_api_ui_api(cli, project):
    write_ui_workflow(cli, project)
    ui = json.loads((project / "ui.json").read_text())
    assert isinstance(ui["nodes"], list) and len(ui["nodes"]) == 7
    back = cli("convert", "ui.json")
    assert back.code == 0, back.err
    original = txt2img.txt2img_prompt()
    converted = back.json()
    assert {k: (v["class_type"], v["inputs"]) for k, v in converted.items()} == {
        k: (v["class_type"], v["inputs"]) for k, v in original.items()
    }


def test_run_ui_format_workflow(cli, project):
    write_ui_workflow(cli, project)
    result = cli("run", "ui.json", "--set", "Positive.text=from the UI file", "--json")
    assert result.code == 0, result.err
    assert (
        json.loads(Path(result.json()["items"][0]["files"][0]).read_text())["positive"] == "from the UI file"
    )


def test_run_workflow_embedded_in_png(cli, project):
    prompt = txt2img.txt2img_prompt()
    prompt["3"]["inputs"]["seed"] = 777
    PILImage.new("RGB", (8, 8)).save(
        project / "made.png", pnginfo=png_info(prompt, {"workflow": {"nodes": []}})
    )
    result = cli("run", "made.png", "--json")
    assert result.code == 0, result.err
    assert json.loads(Path(result.json()["items"][0]["files"][0]).read_text())["seed"] == 777


def test_run_workflow_embedded_in_video(cli, project):
    from engine.formats.media_metadata import container_metadata
    from nodes.defs.video import encode_video

    prompt = txt2img.txt2img_prompt()
    prompt["6"]["inputs"]["text"] = "from the video"
    frames = [PILImage.new("RGB", (16, 16))] * 2
    data = encode_video(frames, "mp4", 1.0, metadata=container_metadata(prompt, {"workflow": {"nodes": []}}))
    (project / "steps.mp4").write_bytes(data)
    result = cli("run", "steps.mp4", "--json")
    assert result.code == 0, result.err
    assert json.loads(Path(result.json()["items"][0]["files"][0]).read_text())["positive"] == "from the video"


def test_validate_json_reports_an_unreadable_workflow(cli, project):
    (project / "broken.json").write_text("{", encoding="utf-8")
    result = cli("validate", "broken.json", "--json")
    assert result.code == 2
    doc = result.json()
    assert doc["ok"] is False and "broken.json" in doc["error"]["message"]


def test_nodes_lists_and_prints_one_schema(cli):
    listing = cli("nodes")
    assert listing.code == 0
    assert [line.split()[0] for line in listing.out.splitlines()][:1] == ["CLIPTextEncode"]
    assert "KSampler" in listing.out and "sampling" in listing.out
    schema = cli("nodes", "KSampler")
    assert schema.code == 0
    info = schema.json()
    assert info["name"] == "KSampler" and info["input"]["required"]["steps"][0] == "INT"
    choices = cli("nodes", "CheckpointLoaderSimple").json()["input"]["required"]["ckpt_name"][0]
    assert choices == ["tiny.safetensors"]


def test_nodes_unknown_class_suggests_close_names(cli):
    result = cli("nodes", "KSamplr")
    assert result.code == 2 and "did you mean KSampler" in result.err


def test_serve_starts_the_server_with_our_registry(cli, monkeypatch):
    import server.main

    seen = {}

    def fake_serve(registry, env, settings, *, log_level="info"):
        seen.update(nodes=sorted(registry), models=env.model_paths.root, port=settings.port)

    monkeypatch.setattr(server.main, "serve", fake_serve)
    result = cli("serve", "--port", "0", "--models-dir", "models")
    assert result.code == 0, result.err
    assert seen == {
        "nodes": sorted(c.class_type for c in txt2img.ALL),
        "models": Path("models"),
        "port": 0,
    }


def test_make_checkpoint_passes_arguments_through(cli, project):
    result = cli("make-checkpoint", "--arch", "sd15", "--size", "tiny", "--seed", "1", "x.safetensors")
    assert result.code == 0, result.err
    assert (project / "x.safetensors").stat().st_size > 1_000_000


def test_cli_exits_quietly_when_the_pipe_reader_quits(project, monkeypatch):
    class ClosedPipe(io.StringIO):
        def write(self, text: str) -> int:
            raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    assert main(["nodes"], registry_factory=txt2img.stub_registry_factory) == 141


def test_serve_and_run_read_the_same_models_dir_variable(cli, project, monkeypatch):
    import server.main
    from engine.model_paths import MODELS_DIR_ENV

    seen = {}
    monkeypatch.setattr(server.main, "serve", lambda registry, env, settings, **kw: seen.update(m=env))
    monkeypatch.setenv(MODELS_DIR_ENV, str(project / "shared-models"))
    assert cli("serve", "--port", "0").code == 0
    assert seen["m"].model_paths.root == project / "shared-models"
