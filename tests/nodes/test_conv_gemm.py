"""GEMM-routed convolutions: same results as nn.Conv2d, right shapes chosen, copies rebound, opt-out honoured."""

from __future__ import annotations

import copy

import pytest
import torch

from nodes.diffusion import conv_gemm
from nodes.diffusion.denoiser_runtime import prepared_denoiser


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


@pytest.mark.parametrize(
    ("kernel", "stride", "padding", "bias", "side"),
    [(1, 1, 0, True, 16), (1, 1, 0, False, 4), (3, 1, 1, True, 8), (3, 2, 1, True, 8), (3, 1, 1, False, 4)],
)
def test_conv_as_gemm_matches_conv2d(kernel, stride, padding, bias, side):
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(24, 40, kernel, stride=stride, padding=padding, bias=bias)
    x = torch.randn(2, 24, side, side)
    out = conv_gemm.conv_as_gemm(conv, x)
    assert out is not None
    expected = conv(x)
    assert out.shape == expected.shape and out.is_contiguous()
    assert _rel(out, expected) < 1e-6


def test_conv_as_gemm_leaves_large_3x3_maps_and_other_layouts_to_onednn():
    conv = torch.nn.Conv2d(8, 8, 3, padding=1)
    assert conv_gemm.conv_as_gemm(conv, torch.randn(1, 8, 16, 16)) is None  # 256 pixels: oneDNN is faster
    small = torch.randn(1, 8, 4, 4).contiguous(memory_format=torch.channels_last)
    assert conv_gemm.conv_as_gemm(conv, small) is None
    assert conv_gemm.conv_as_gemm(conv, torch.randn(1, 8, 4, 4, dtype=torch.bfloat16)) is None


def _unet_like() -> torch.nn.Sequential:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(4, 32, 3, padding=1),
        torch.nn.GroupNorm(8, 32),
        torch.nn.SiLU(),
        torch.nn.Conv2d(32, 32, 3, stride=2, padding=1),
        torch.nn.Conv2d(32, 32, 3, padding=1, groups=2),  # grouped: stays on nn.Conv2d.forward
        torch.nn.Conv2d(32, 4, 1),
    )


def test_install_keeps_results_and_deep_copies_use_their_own_weights():
    net, x = _unet_like(), torch.randn(2, 4, 8, 8)
    expected = net(x)
    assert conv_gemm.install(net) == 3
    assert conv_gemm.install(net) == 0  # idempotent
    assert _rel(net(x), expected) < 1e-6
    patched = copy.deepcopy(net)
    last = patched[5]
    assert isinstance(last, torch.nn.Conv2d)
    with torch.no_grad():
        last.weight.mul_(2.0)  # a LoRA-style change on the copy only
    reference = copy.deepcopy(net)
    conv_gemm.uninstall(reference)
    assert _rel(patched(x), reference(x)) > 1e-2  # the copy computes with its own (changed) weights
    assert _rel(net(x), expected) < 1e-6  # the original is untouched
    assert set(net.state_dict()) == set(_unet_like().state_dict())


def test_prepared_denoiser_routes_fp32_cpu_convs_unless_switched_off(monkeypatch):
    monkeypatch.delenv("DIFFGRAPH_CHANNELS_LAST", raising=False)
    monkeypatch.delenv("DIFFGRAPH_COMPILE", raising=False)
    monkeypatch.delenv(conv_gemm.GEMM_CONV_ENV, raising=False)
    net = _unet_like()
    prepared_denoiser(net)
    assert "forward" in net[0].__dict__
    monkeypatch.setenv(conv_gemm.GEMM_CONV_ENV, "0")
    other = _unet_like()
    prepared_denoiser(other)
    assert "forward" not in other[0].__dict__
