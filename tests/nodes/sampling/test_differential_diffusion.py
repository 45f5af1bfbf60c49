"""Differential Diffusion: the per-step mask equals ComfyUI's, and the node hands out a handle that uses it.

data/differential_diffusion/comfy_masks.json holds ComfyUI 0.3.64's masks for an SD1.5-style discrete
sampling (10 steps, normal) and a discrete-flow one (shift 3, 10 steps, simple), strengths 1 and 0.5;
make_comfy_reference.py beside it says how they were recorded.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from nodes.defs.differential_diffusion import DifferentialDiffusion
from nodes.sampling.flow import FlowModelSampling
from nodes.sampling.model_sampling import DiscreteModelSampling
from nodes.sampling.samplers import differential_mask
from nodes.sampling.schedulers import ksampler_sigmas
from nodes.types import FlowSampling

DATA = Path(__file__).resolve().parents[1] / "data" / "differential_diffusion" / "comfy_masks.json"


@pytest.mark.parametrize("case", ["discrete_1.0", "discrete_0.5", "flow_1.0", "flow_0.5"])
def test_differential_mask_matches_comfyui_at_every_step(case):
    ref = json.loads(DATA.read_text())
    kind, strength = case.split("_")
    if kind == "discrete":
        ms, scheduler = DiscreteModelSampling.create("eps"), "normal"
    else:
        ms, scheduler = FlowModelSampling.create(FlowSampling("discrete_flow", 3.0)), "simple"
    sigmas = ksampler_sigmas(ms, scheduler, "euler", 10)
    expected = ref["cases"][case]
    torch.testing.assert_close(sigmas, torch.tensor(expected["sigmas"]), rtol=1e-5, atol=1e-6)
    mask = torch.tensor(ref["mask"]).reshape(1, 1, 1, -1)
    for sigma, row in zip(sigmas[:-1], expected["masks"], strict=True):
        out = differential_mask(mask, sigma.reshape(1), sigmas, ms, float(strength))
        torch.testing.assert_close(out.flatten(), torch.tensor(row), rtol=0, atol=1e-6)


def test_differential_diffusion_node_sets_strength_on_a_new_handle(tiny_models_dir, model_store, tmp_path):
    from nodes.defs.loaders import CheckpointLoaderSimple
    from tests.nodes.helpers_models import make_ctx

    ctx = make_ctx(tiny_models_dir, model_store, tmp_path)
    ckpt = CheckpointLoaderSimple.Inputs(ckpt_name=next((tiny_models_dir / "checkpoints").iterdir()).name)
    model = CheckpointLoaderSimple().run(ctx, ckpt).MODEL
    out = DifferentialDiffusion().run(ctx, DifferentialDiffusion.Inputs(model=model, strength=0.7)).MODEL
    assert out.differential_diffusion == 0.7 and model.differential_diffusion is None


def test_differential_diffusion_changes_a_soft_masked_inpaint_run(
    tiny_models_dir, tiny_sd15_name, model_store, tmp_path
):
    from engine import Environment, ModelPaths
    from engine.executor import Executor
    from nodes.pack import build_registry

    paths = ModelPaths(tiny_models_dir)
    env = Environment(tmp_path, tmp_path, tmp_path, models=model_store, model_paths=paths)
    executor = Executor(build_registry(paths, tmp_path), env)

    def run(model_link):
        prompt = {
            "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": tiny_sd15_name}},
            "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "a fox", "clip": ["1", 1]}},
            "3": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
            "4": {"class_type": "SolidMask", "inputs": {"value": 0.5, "width": 64, "height": 64}},
            "5": {"class_type": "SetLatentNoiseMask", "inputs": {"samples": ["3", 0], "mask": ["4", 0]}},
            "6": {"class_type": "DifferentialDiffusion", "inputs": {"model": ["1", 0]}},
            "7": {
                "class_type": "KSampler",
                "inputs": {
                    "model": model_link,
                    "seed": 3,
                    "steps": 4,
                    "cfg": 1.0,
                    "sampler_name": "euler",
                    "scheduler": "normal",
                    "denoise": 1.0,
                    "positive": ["2", 0],
                    "negative": ["2", 0],
                    "latent_image": ["5", 0],
                },
            },
        }
        result = executor.execute(prompt, prompt_id="p", outputs=["7"])
        assert result.status == "success", result.error and result.error.data()
        return result.node_outputs["7"].LATENT.samples

    assert not torch.allclose(run(["1", 0]), run(["6", 0]))
