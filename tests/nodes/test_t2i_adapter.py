"""T2I-Adapters: published layouts, features against ComfyUI's Adapter, workflows steered on tiny models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from nodes.diffusion.controlnet import inspect_control_file
from tests.nodes.test_controlnet import PROMPT, _latent, _with_control, control_files, run, workspace

__all__ = ["control_files", "run", "workspace"]

# Facts from published adapters' headers: TencentARC t2iadapter_canny_sd15v2 (original layout) and
# TencentARC/t2i-adapter-canny-sdxl-1.0 (diffusers layout).
PUBLISHED_T2I_SD15 = {
    "conv_in.weight": (320, 64, 3, 3),
    "body.0.block1.weight": (320, 320, 3, 3),
    "body.0.block2.weight": (320, 320, 1, 1),
    "body.2.in_conv.weight": (640, 320, 1, 1),
    "body.7.block2.weight": (1280, 1280, 1, 1),
}
PUBLISHED_T2I_SDXL_DIFFUSERS = {
    "adapter.conv_in.weight": (320, 256, 3, 3),
    "adapter.body.1.in_conv.weight": (640, 320, 1, 1),
    "adapter.body.3.resnets.1.block2.weight": (1280, 1280, 1, 1),
}
T2I_FEATURES = Path(__file__).parent / "data" / "t2i" / "comfyui_t2i_features.safetensors"


def test_t2i_adapter_layouts_have_the_published_names_and_shapes():
    from nodes.diffusion.controlnet_files import t2i_adapter_layout
    from nodes.diffusion.t2i_adapter import original_to_diffusers

    sd15 = t2i_adapter_layout("sd15", "full")
    for key, shape in PUBLISHED_T2I_SD15.items():
        assert sd15[key] == shape, key
    xl = original_to_diffusers(
        {k: torch.empty(s, device="meta") for k, s in t2i_adapter_layout("sdxl", "full").items()}, "x"
    )
    for key, shape in PUBLISHED_T2I_SDXL_DIFFUSERS.items():
        assert tuple(xl[key].shape) == shape, key


@pytest.mark.parametrize("arch", ["sd15", "sdxl"])
def test_t2i_adapter_features_match_comfyui(tmp_path, arch):
    from safetensors.torch import load_file

    from nodes.diffusion.controlnet_files import make_t2i_adapter
    from nodes.diffusion.t2i_adapter import build_t2i_adapter

    path = make_t2i_adapter(arch, "tiny", 0, tmp_path / f"t2i-{arch}.safetensors")
    assert inspect_control_file(path) == ("t2i_adapter", "t2i", "")
    ref = {k.split(".", 1)[1]: v for k, v in load_file(str(T2I_FEATURES)).items() if k.startswith(arch + ".")}
    features = build_t2i_adapter(path, "t2i", torch.float32)(ref.pop("hint"))
    # ComfyUI lists them in the reversed order its UNet pops them; SDXL's last one goes to the middle block.
    expected = [ref[k] for k in sorted(ref, key=lambda k: (k.startswith("middle"), -int(k[-1])))]
    assert len(features) == len(expected) == 4
    for ours, theirs in zip(features, expected, strict=True):
        assert torch.allclose(ours, theirs, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("ckpt", ["tiny-sd15.safetensors", "tiny-sdxl.safetensors"])
def test_t2i_adapter_steers_a_workflow(run, ckpt):
    prompt = json.loads(json.dumps(PROMPT))
    prompt["4"]["inputs"]["ckpt_name"] = ckpt
    name = "t2i-xl.safetensors" if "sdxl" in ckpt else "t2i-sd15.safetensors"
    plain = _latent(run(prompt))
    steered = _latent(run(_with_control(prompt, name, end=0.5)))
    assert torch.isfinite(steered).all() and not torch.allclose(plain, steered)
