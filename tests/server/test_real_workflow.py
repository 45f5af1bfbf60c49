"""A ComfyUI API-format client, unchanged, runs workflows/txt2img_sd15.json on the real nodes and a tiny checkpoint."""

from __future__ import annotations

import io
import json
import uuid
from pathlib import Path

import pytest
from PIL import Image

from engine import Environment, ModelPaths
from tests.server.conftest import is_done, receive_until

ROOT = Path(__file__).resolve().parents[2]
TXT2IMG = ROOT / "workflows" / "txt2img_sd15.json"
NEEDED = {
    "CheckpointLoaderSimple",
    "CLIPTextEncode",
    "EmptyLatentImage",
    "KSampler",
    "VAEDecode",
    "SaveImage",
}


@pytest.fixture
def real_registry(tiny_models_dir, folders):
    """The builtin pack over the tiny models; every node the workflow needs must be registered."""
    from nodes.pack import build_registry

    registry = build_registry(ModelPaths(tiny_models_dir), folders.base / "input")
    missing = NEEDED - set(registry)
    assert not missing, f"the builtin pack lacks nodes the shipped workflow needs: {sorted(missing)}"
    assert TXT2IMG.is_file(), f"{TXT2IMG} is missing"
    return registry


@pytest.mark.slow
def test_comfyui_script_client_gets_its_image(
    real_registry, tiny_models_dir, tiny_sd15_name, folders, make_server
):
    from engine.model_store import ModelStore

    env = Environment(
        folders.base / "output",
        folders.base / "temp",
        folders.base / "input",
        ModelStore(),
        ModelPaths(tiny_models_dir),
    )
    live = make_server(real_registry, env)
    prompt = json.loads(TXT2IMG.read_text())
    prompt["4"]["inputs"]["ckpt_name"] = tiny_sd15_name
    prompt["5"]["inputs"].update(width=64, height=64)
    prompt["3"]["inputs"]["steps"] = 3
    client_id = uuid.uuid4().hex
    # What ComfyUI's script_examples/websockets_api_example.py does, step by step.
    with live.ws(client_id=client_id) as conn, live.client() as http:
        prompt_id = http.post("/prompt", json={"prompt": prompt, "client_id": client_id}).json()["prompt_id"]
        frames = receive_until(conn, is_done(prompt_id), timeout=300)
        history = http.get(f"/history/{prompt_id}").json()[prompt_id]
        images = [
            http.get(
                "/view", params={"filename": i["filename"], "subfolder": i["subfolder"], "type": i["type"]}
            ).content
            for output in history["outputs"].values()
            for i in output.get("images", [])
        ]
    types = [f["type"] for f in frames if isinstance(f, dict)]
    assert history["status"]["status_str"] == "success", history["status"]
    assert types.count("progress") >= 3
    assert any(isinstance(f, bytes) and f[:4] == b"\x00\x00\x00\x01" for f in frames)  # live previews
    assert len(images) == 1
    image = Image.open(io.BytesIO(images[0]))
    assert image.size == (64, 64)
    assert json.loads(image.text["prompt"])["3"]["class_type"] == "KSampler"
