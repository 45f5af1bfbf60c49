"""Denoiser runtime: channels-last layout by default, same results, set up once; compile settings checked."""

from __future__ import annotations

import pytest
import torch

from nodes.diffusion.denoiser_runtime import channels_last_for, compile_mode, input_layout, prepared_denoiser


def _convnet() -> torch.nn.Sequential:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(4, 32, 3, padding=1),
        torch.nn.GroupNorm(8, 32),
        torch.nn.SiLU(),
        torch.nn.Conv2d(32, 4, 1),
    )


def _first_weight(net: torch.nn.Sequential) -> torch.Tensor:
    conv = net[0]
    assert isinstance(conv, torch.nn.Conv2d)
    return conv.weight


def test_prepared_denoiser_runs_channels_last_with_the_same_result(monkeypatch):
    monkeypatch.setenv("DIFFGRAPH_CHANNELS_LAST", "1")
    monkeypatch.delenv("DIFFGRAPH_COMPILE", raising=False)
    net, x = _convnet(), torch.randn(2, 4, 16, 16)
    expected = net(x)
    fn = prepared_denoiser(net)
    assert _first_weight(net).is_contiguous(memory_format=torch.channels_last)
    got = fn(input_layout(x))
    assert float((got - expected).norm() / expected.norm()) < 1e-5
    assert prepared_denoiser(net) is fn  # prepared once per module


def test_channels_last_follows_the_compute_dtype_by_default(monkeypatch):
    monkeypatch.delenv("DIFFGRAPH_CHANNELS_LAST", raising=False)
    cpu = torch.device("cpu")
    assert not channels_last_for(torch.float32, cpu)
    assert channels_last_for(torch.bfloat16, cpu)
    assert channels_last_for(torch.float32, torch.device("cuda"))
    monkeypatch.delenv("DIFFGRAPH_COMPILE", raising=False)
    net = _convnet()
    prepared_denoiser(net)
    assert _first_weight(net).is_contiguous()


def test_channels_last_can_be_switched_off(monkeypatch):
    monkeypatch.setenv("DIFFGRAPH_CHANNELS_LAST", "0")
    monkeypatch.delenv("DIFFGRAPH_COMPILE", raising=False)
    net = _convnet()
    prepared_denoiser(net)
    assert _first_weight(net).is_contiguous()
    assert input_layout(torch.randn(1, 4, 8, 8)).is_contiguous()


def test_compile_setting_rejects_unknown_values(monkeypatch):
    monkeypatch.setenv("DIFFGRAPH_COMPILE", "sometimes")
    with pytest.raises(ValueError, match="DIFFGRAPH_COMPILE"):
        compile_mode()


def test_cuda_graph_mode_is_refused_on_cpu(monkeypatch):
    monkeypatch.setenv("DIFFGRAPH_COMPILE", "cudagraphs")
    with pytest.raises(ValueError, match="needs a CUDA device"):
        prepared_denoiser(_convnet())


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.mark.gpu
@needs_cuda
def test_prepared_denoiser_on_cuda_in_half_precision_matches_cpu(monkeypatch):
    monkeypatch.delenv("DIFFGRAPH_COMPILE", raising=False)
    net, x = _convnet(), torch.randn(2, 4, 32, 32)
    expected = net(x)
    gpu = net.to("cuda", torch.float16)
    got = prepared_denoiser(gpu)(input_layout(x.to("cuda", torch.float16))).float().cpu()
    assert _first_weight(gpu).is_contiguous(memory_format=torch.channels_last)
    assert float((got - expected).norm() / expected.norm()) < 1e-2


@pytest.mark.gpu
@needs_cuda
def test_cuda_graph_mode_replays_the_same_result(monkeypatch, tmp_path):
    monkeypatch.setenv("DIFFGRAPH_COMPILE", "cudagraphs")
    monkeypatch.setenv("DIFFGRAPH_COMPILE_CACHE", str(tmp_path))
    net, x = _convnet().to("cuda"), torch.randn(2, 4, 32, 32, device="cuda")
    expected = net(x)
    fn = prepared_denoiser(net)
    with torch.inference_mode():
        first, second = fn(input_layout(x)).clone(), fn(input_layout(x)).clone()
    assert torch.allclose(first, second)
    assert float((first - expected).norm() / expected.norm()) < 1e-3
