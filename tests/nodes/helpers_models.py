"""Helpers for model-stack node tests: a RunContext over the tiny models directory."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

from engine import CancelToken, Environment, ModelPaths, RunContext
from nodes.diffusion.checkpoint_io import read_weights

CONV_IN = "model.diffusion_model.input_blocks.0.0.weight"


def widened_unet_copy(source: Path, target: Path, extra: int, scale: float) -> Path:
    """A copy of an SD checkpoint whose first convolution reads `extra` more input channels (seeded
    random weights times `scale`): an inpainting (5) or instruct-pix2pix (4) UNet of the same size."""
    sd = read_weights(source)
    conv = sd[CONV_IN]
    added = torch.randn((conv.shape[0], extra, *conv.shape[2:]), generator=torch.Generator().manual_seed(5))
    sd[CONV_IN] = torch.cat([conv, (added * scale).to(conv.dtype)], dim=1)
    save_file(sd, str(target))
    return target


def make_ctx(models_dir: Path, store, tmp: Path) -> RunContext:
    """A RunContext whose model paths point at `models_dir` and whose store is `store`."""
    env = Environment(tmp, tmp, tmp, models=store, model_paths=ModelPaths(models_dir))
    return RunContext(
        env=env,
        prompt_id="p",
        node_id="1",
        display_node_id="1",
        prompt={},
        extra_data={},
        linked_outputs=frozenset(),
        _cancel=CancelToken(),
        _emit=lambda event: None,
        _on_progress=lambda node, value, maximum: None,
    )


def tiny_preview_txt2img(steps: int) -> dict:
    """A 64x64 txt2img on tiny.safetensors (cfg 1, euler) ending in PreviewImage: sampler previews' test graph."""
    return {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "tiny.safetensors"}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat", "clip": ["4", 1]}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "3": {
            "class_type": "KSampler",
            "inputs": {
                "seed": 1,
                "steps": steps,
                "cfg": 1.0,
                "sampler_name": "euler",
                "scheduler": "normal",
                "denoise": 1.0,
                "model": ["4", 0],
                "positive": ["6", 0],
                "negative": ["6", 0],
                "latent_image": ["5", 0],
            },
        },
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "PreviewImage", "inputs": {"images": ["8", 0]}},
    }
