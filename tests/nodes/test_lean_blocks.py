"""Lean ResNet/attention forwards: bit-identical UNet outputs, diffusers' code outside inference, clean undo."""

from __future__ import annotations

import copy

import torch
from diffusers import UNet2DConditionModel
from diffusers.models.attention_processor import AttnProcessor2_0
from diffusers.models.resnet import ResnetBlock2D

from nodes.diffusion import lean_blocks
from nodes.diffusion.denoiser_runtime import prepared_denoiser


def _tiny_unet() -> UNet2DConditionModel:
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=24,
        attention_head_dim=8,
        norm_num_groups=8,
    )
    return unet.eval()


def _inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    torch.manual_seed(1)
    return torch.randn(2, 4, 8, 8), torch.tensor([10.0, 900.0]), torch.randn(2, 5, 24)


def _run(unet: UNet2DConditionModel) -> torch.Tensor:
    x, t, context = _inputs()
    with torch.inference_mode():
        return unet(x, t, encoder_hidden_states=context, return_dict=False)[0]


def test_install_gives_bit_identical_unet_outputs():
    unet = _tiny_unet()
    expected = _run(unet)
    resnets = sum(type(m) is ResnetBlock2D for m in unet.modules())
    attentions = sum(type(getattr(m, "processor", None)) is AttnProcessor2_0 for m in unet.modules())
    assert lean_blocks.install(unet) == resnets + attentions
    assert lean_blocks.install(unet) == 0  # idempotent
    assert torch.equal(_run(unet), expected)


def test_autograd_and_copies_keep_working():
    unet = _tiny_unet()
    lean_blocks.install(unet)
    x, t, context = _inputs()
    x.requires_grad_(True)
    unet(x, t, encoder_hidden_states=context, return_dict=False)[0].sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()  # in-place paths stay out of autograd
    patched = copy.deepcopy(unet)
    with torch.no_grad():
        for module in patched.modules():
            if type(module) is ResnetBlock2D:
                module.conv2.weight.mul_(2.0)  # a LoRA-style change on the copy only
    reference = copy.deepcopy(patched)
    lean_blocks.uninstall(reference)
    assert torch.equal(_run(patched), _run(reference))  # the copy runs with its own weights
    assert not torch.equal(_run(patched), _run(unet))


def test_uninstall_restores_diffusers_forwards():
    unet = _tiny_unet()
    lean_blocks.install(unet)
    lean_blocks.uninstall(unet)
    assert all("forward" not in m.__dict__ for m in unet.modules() if type(m) is ResnetBlock2D)
    assert not any(
        isinstance(getattr(m, "processor", None), lean_blocks.LeanAttnProcessor) for m in unet.modules()
    )


def test_prepared_denoiser_installs_lean_blocks_in_eager_mode(monkeypatch):
    monkeypatch.delenv("DIFFGRAPH_COMPILE", raising=False)
    unet = _tiny_unet()
    expected = _run(unet)
    prepared_denoiser(unet)
    assert any(
        isinstance(getattr(m, "processor", None), lean_blocks.LeanAttnProcessor) for m in unet.modules()
    )
    assert (_run(unet) - expected).abs().max() < 1e-5  # only conv_gemm/upsample_fold reorder sums
