"""Every step's latent of a 30-step run over the websocket, received with diffgraph's client helper."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from diffgraph.stream_client import LatentClient
from engine import Environment, ModelPaths

TXT2IMG = Path(__file__).resolve().parents[2] / "workflows" / "txt2img_sd15.json"
STEPS = 30


def _prompt(ckpt: str) -> dict:
    """txt2img at 64x64 for 30 steps, saving the final latent instead of decoding it."""
    prompt = json.loads(TXT2IMG.read_text())
    prompt["4"]["inputs"]["ckpt_name"] = ckpt
    prompt["5"]["inputs"].update(width=64, height=64)
    prompt["3"]["inputs"].update(steps=STEPS, seed=7)
    for node_id in [k for k, v in prompt.items() if v["class_type"] in ("VAEDecode", "SaveImage")]:
        del prompt[node_id]
    prompt["20"] = {
        "class_type": "SaveLatent",
        "inputs": {"samples": ["3", 0], "filename_prefix": "steps/run"},
    }
    return prompt


@pytest.mark.slow
def test_latent_stream_rebuilds_every_step_of_30(tiny_models_dir, tiny_sd15_name, folders, make_server):
    from engine.model_store import ModelStore
    from nodes.pack import build_registry

    env = Environment(
        folders.base / "output",
        folders.base / "temp",
        folders.base / "input",
        ModelStore(),
        ModelPaths(tiny_models_dir),
    )
    live = make_server(build_registry(env.model_paths, env.input_dir), env)
    with LatentClient(live.url) as client:
        prompt_id = client.queue(_prompt(tiny_sd15_name))
        steps = client.collect(prompt_id, timeout=300)
    latents = steps["3"]
    saved = next((folders.base / "output" / "steps").glob("run_*.latent"))
    final = load_file(saved)["latent_tensor"]
    assert latents.shape == (STEPS, 1, 4, 8, 8)
    assert torch.equal(latents[-1], final)  # the last step is the sampler's output, bit for bit
    changes = (latents[1:] - latents[:-1]).abs().flatten(1).amax(1)
    assert bool((changes > 0).all())  # 30 distinct steps: every one was received, none repeated
