"""EasyCache: the skip decisions and outputs of ComfyUI 0.3.64's EasyCache, and the node on a FLUX model.

data/easycache/comfyui_easycache.safetensors holds ComfyUI's own EasyCache code driving an Euler loop
over a stand-in flow model (data/easycache/make_comfyui_easycache.py says exactly how); the same loop
runs here through `EasyCacheRun` and must count the same skips and give the same x0 at every step.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from nodes.defs.model_patches import EasyCache
from nodes.diffusion.easycache import EasyCachePatch, EasyCacheRun
from nodes.diffusion.model_handle import DiffusionModel
from nodes.diffusion.recipe import ComponentRecipe
from nodes.diffusion.unet_patches import ModelInfo, compile_patches
from nodes.sampling.cfg import CfgDenoiser
from nodes.sampling.flow import FlowModelSampling
from nodes.types import CondEntry, FlowSampling

DATA = load_file(str(Path(__file__).parent / "data" / "easycache" / "comfyui_easycache.safetensors"))
SCENARIOS = {
    "one": (1, 1.0, EasyCachePatch(0.3, 0.15, 0.95)),
    "two": (2, 2.5, EasyCachePatch(0.3, 0.15, 0.95)),
    "late": (1, 1.0, EasyCachePatch(1.0, 0.4, 0.7)),
}


def _flux_sampling() -> FlowModelSampling:
    return FlowModelSampling.create(FlowSampling("flux", 1.15))


def _stand_in(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    return torch.tanh(x * DATA["in.a"] + sigma.view(-1, 1, 1, 1) * DATA["in.b"])


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_easycache_skips_and_outputs_match_comfyui(name):
    conds, cfg, patch = SCENARIOS[name]
    ms = _flux_sampling()
    run = EasyCacheRun(
        patch, ms.percent_to_sigma(patch.start_percent), ms.percent_to_sigma(patch.end_percent), torch.float32
    )
    assert [run.start_sigma, run.end_sigma] == pytest.approx(DATA[f"{name}.window"].tolist(), abs=1e-12)
    sigmas = DATA[f"{name}.sigmas"]
    x = DATA["in.noise"] * sigmas[0]
    for i in range(len(sigmas) - 1):
        sigma = sigmas[i : i + 1]
        run.new_evaluation()
        input_x = torch.cat([x] * conds)
        options = {"sigmas": sigma.repeat(conds), "uuids": [f"c{k}" for k in range(conds)]}
        output = run(lambda v, s=sigma.repeat(conds): _stand_in(v, s), input_x, options)
        denoised = input_x - output * sigma.view(-1, 1, 1, 1)
        parts = denoised.chunk(conds)
        x0 = parts[0] if conds == 1 else parts[0] + (parts[1] - parts[0]) * cfg
        assert torch.equal(x0, DATA[f"{name}.x0s"][i]), f"step {i}"
        x = x + (x - x0) / sigmas[i] * (sigmas[i + 1] - sigmas[i])
    assert run.skipped == int(DATA[f"{name}.skipped"]) > 0
    assert torch.equal(x, DATA[f"{name}.latent"])


def test_easycache_through_cfg_denoiser_skips_model_calls():
    """The patch wraps the sampler's model calls: fewer real calls, the same result as the loop above."""
    patch = EasyCachePatch(0.3, 0.15, 0.95)
    ms = _flux_sampling()
    options = compile_patches((patch,), ModelInfo(0, ms.percent_to_sigma, torch.float32))
    calls = []

    def unet(x_in, timesteps, embeds, pooled, extras, transformer_options=None):
        calls.append(float(timesteps[0]))
        return _stand_in(x_in, timesteps)

    positive = [CondEntry(torch.zeros(1, 4, 8))]
    denoiser = CfgDenoiser(unet, ms, positive, [], 1.0, options=options)
    sigmas = DATA["one.sigmas"]
    x = DATA["in.noise"] * sigmas[0]
    for i in range(len(sigmas) - 1):
        x0 = denoiser(x, sigmas[i : i + 1])
        assert torch.equal(x0, DATA["one.x0s"][i]), f"step {i}"
        x = x + (x - x0) / sigmas[i] * (sigmas[i + 1] - sigmas[i])
    assert len(calls) == len(sigmas) - 1 - int(DATA["one.skipped"])


def test_easycache_node_adds_a_patch_and_leaves_sd3_unchanged():
    flux = DiffusionModel(ComponentRecipe("unused", "flux-dev", "unet"))
    inputs = EasyCache.Inputs(
        model=flux, reuse_threshold=0.2, start_percent=0.15, end_percent=0.95, verbose=False
    )
    out = EasyCache().run(None, inputs).MODEL  # type: ignore[arg-type]
    assert out.patches == (EasyCachePatch(0.2, 0.15, 0.95, False),) and flux.patches == ()
    sd3 = DiffusionModel(ComponentRecipe("unused", "sd3", "unet"))
    assert EasyCache().run(None, EasyCache.Inputs(model=sd3)).MODEL is sd3  # type: ignore[arg-type]
