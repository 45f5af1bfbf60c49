"""Folded upsamplers: same output as diffusers' Upsample2D, only where they pay, weights followed, opt-out honoured."""

from __future__ import annotations

import copy

import pytest
import torch
from diffusers.models.upsampling import Upsample2D

from nodes.diffusion import conv_gemm, upsample_fold
from nodes.diffusion.denoiser_runtime import prepared_denoiser


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


def _upsampler(channels: int = 16, out_channels: int = 24) -> Upsample2D:
    torch.manual_seed(0)
    return Upsample2D(channels, use_conv=True, out_channels=out_channels).eval()


@pytest.mark.parametrize(("bias", "height", "width"), [(True, 8, 8), (False, 16, 16), (True, 5, 11)])
def test_fold_weight_matches_upsample_then_conv(bias, height, width):
    torch.manual_seed(1)
    conv = torch.nn.Conv2d(12, 20, 3, padding=1, bias=bias)
    x = torch.randn(2, 12, height, width)
    with torch.no_grad():
        expected = conv(torch.nn.functional.interpolate(x, scale_factor=2.0, mode="nearest"))
        out = upsample_fold.upsample_conv(conv, x)
    assert out.shape == expected.shape == (2, 20, 2 * height, 2 * width)
    assert _rel(out, expected) < 1e-6


def test_install_routes_large_maps_and_leaves_the_rest_to_diffusers():
    up = _upsampler()
    x_large, x_small = torch.randn(2, 16, 8, 8), torch.randn(2, 16, 4, 4)
    with torch.inference_mode():
        expected_large, expected_small = up(x_large), up(x_small)
        expected_sized = up(x_small, output_size=(9, 9))
        assert upsample_fold.install(up) == 1
        assert upsample_fold.install(up) == 0  # idempotent
        assert _rel(up(x_large), expected_large) < 1e-6
        assert "_diffgraph_folded_weight" in up.conv.__dict__
        # 8x8 outputs stay on the conv's own route (conv_gemm's GEMM is faster there), sizes as asked.
        fresh = _upsampler()
        upsample_fold.install(fresh)
        assert _rel(fresh(x_small), expected_small) == 0.0
        assert "_diffgraph_folded_weight" not in fresh.conv.__dict__
        assert fresh(x_small, output_size=(9, 9)).shape == expected_sized.shape
        half = copy.deepcopy(fresh).bfloat16()
        assert half(x_large.bfloat16()).dtype == torch.bfloat16
        assert "_diffgraph_folded_weight" not in half.conv.__dict__  # bf16 runs diffusers' own forward
    with torch.enable_grad():
        x = x_large.clone().requires_grad_(True)
        up(x).sum().backward()  # autograd keeps diffusers' forward, so gradients still flow
        assert x.grad is not None
    upsample_fold.uninstall(up)
    assert "forward" not in up.__dict__ and "_diffgraph_folded_weight" not in up.conv.__dict__


def test_folded_weight_follows_in_place_changes_and_deep_copies():
    up, x = _upsampler(), torch.randn(1, 16, 8, 8)
    upsample_fold.install(up)
    with torch.inference_mode():
        before = up(x)
    patched = copy.deepcopy(up)
    with torch.no_grad():
        patched.conv.weight.mul_(2.0)  # a LoRA-style in-place change on the copy only
    reference = _upsampler()
    with torch.no_grad():
        reference.conv.weight.mul_(2.0)
    with torch.inference_mode():
        assert _rel(patched(x), reference(x)) < 1e-6
        assert _rel(up(x), before) == 0.0  # the original keeps its own folded weight


def test_prepared_denoiser_folds_fp32_cpu_upsamplers_unless_switched_off(monkeypatch):
    monkeypatch.delenv("DIFFGRAPH_CHANNELS_LAST", raising=False)
    monkeypatch.delenv("DIFFGRAPH_COMPILE", raising=False)
    monkeypatch.delenv(conv_gemm.GEMM_CONV_ENV, raising=False)
    net = torch.nn.Sequential(_upsampler())
    prepared_denoiser(net)
    assert "forward" in net[0].__dict__
    monkeypatch.setenv(conv_gemm.GEMM_CONV_ENV, "0")
    other = torch.nn.Sequential(_upsampler())
    prepared_denoiser(other)
    assert "forward" not in other[0].__dict__
