"""unCLIP image variation against ComfyUI's latent on the same reduced random unCLIP-L file (rel L2 <= 1e-4).

data/unclip_reference/make_latent_reference.py says how ComfyUI's latent was made; this test rebuilds
the 1.6 GB file with make-checkpoint (cached under $DIFFGRAPH_TEST_CACHE when set) and runs the same
graph through diffgraph.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from diffgraph.api import Session
from nodes.diffusion.make_checkpoint import make_checkpoint

DATA = Path(__file__).parent / "data" / "unclip_reference"
CKPT = "sd21-unclip-l-reduced.safetensors"
SIZE = 1641283224

PROMPT = {
    "1": {"class_type": "unCLIPCheckpointLoader", "inputs": {"ckpt_name": CKPT}},
    "2": {"class_type": "LoadImage", "inputs": {"image": "photo.png"}},
    "3": {
        "class_type": "CLIPVisionEncode",
        "inputs": {"clip_vision": ["1", 3], "image": ["2", 0], "crop": "center"},
    },
    "4": {
        "class_type": "CLIPTextEncode",
        "inputs": {"text": "a red barn in a snowy field", "clip": ["1", 1]},
    },
    "5": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry, low quality", "clip": ["1", 1]}},
    "6": {
        "class_type": "unCLIPConditioning",
        "inputs": {
            "conditioning": ["4", 0],
            "clip_vision_output": ["3", 0],
            "strength": 1.0,
            "noise_augmentation": 0.1,
        },
    },
    "7": {"class_type": "EmptyLatentImage", "inputs": {"width": 256, "height": 256, "batch_size": 1}},
    "8": {
        "class_type": "KSampler",
        "inputs": {
            "model": ["1", 0],
            "seed": 42,
            "steps": 4,
            "cfg": 7.0,
            "sampler_name": "euler",
            "scheduler": "normal",
            "positive": ["6", 0],
            "negative": ["5", 0],
            "latent_image": ["7", 0],
            "denoise": 1.0,
        },
    },
    "9": {"class_type": "SaveLatent", "inputs": {"samples": ["8", 0], "filename_prefix": "unclip"}},
}


@pytest.fixture(scope="module")
def reduced_unclip_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cache = os.environ.get("DIFFGRAPH_TEST_CACHE")
    root = Path(cache) / "unclip_models" if cache else tmp_path_factory.mktemp("unclip_models")
    path = root / "checkpoints" / CKPT
    if not (path.is_file() and path.stat().st_size == SIZE):
        make_checkpoint("sd2-unclip", "reduced", 2024, path)
    return root


def _rel_l2(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.mark.slow
def test_unclip_variation_matches_comfyui_latent(reduced_unclip_models: Path, tmp_path: Path):
    torch.set_num_threads(os.cpu_count() or 1)
    try:
        with Session(models_dir=reduced_unclip_models, input_dir=DATA, output_dir=tmp_path) as session:
            result = session.run(session.load(PROMPT))
            embeds = result.outputs["3"].CLIP_VISION_OUTPUT.image_embeds
            latent = result.outputs["8"].LATENT.samples
    finally:
        torch.set_num_threads(1)
    embeds_err = _rel_l2(embeds, load_file(str(DATA / "image_embeds.safetensors"))["image_embeds"])
    latent_err = _rel_l2(latent, load_file(str(DATA / "latent.safetensors"))["latent"])
    print(f"unCLIP vs ComfyUI: image_embeds rel L2 {embeds_err:.2e}, latent rel L2 {latent_err:.2e}")
    assert embeds_err <= 1e-4 and latent_err <= 1e-4
