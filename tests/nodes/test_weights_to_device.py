"""Weights go from the file straight to the target device and dtype, with no full host copy on the way."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from engine.devices import DevicePolicy
from engine.model_store import ModelStore
from nodes.diffusion.checkpoint_io import read_safetensors
from nodes.diffusion.loader import load_checkpoint_into


@pytest.fixture
def weights_file(tmp_path):
    torch.manual_seed(0)
    tensors = {
        "a.weight": torch.randn(64, 32, dtype=torch.float16),
        "b.bias": torch.randn(7, dtype=torch.float16),
        "steps": torch.arange(5, dtype=torch.int64),
    }
    path = tmp_path / "w.safetensors"
    save_file(tensors, str(path))
    return path


def test_read_safetensors_on_cpu_gives_each_tensor_its_own_storage_in_the_target_dtype(weights_file):
    got = read_safetensors(weights_file, cast=lambda _key: torch.float32, device="cpu")
    expected = load_file(str(weights_file))
    for key, tensor in got.items():
        want = expected[key].float() if expected[key].is_floating_point() else expected[key]
        assert tensor.dtype == want.dtype and torch.equal(tensor, want)
        # Exactly its own bytes: no view into a file-sized buffer, no second copy in the file's dtype.
        assert tensor.untyped_storage().nbytes() == tensor.numel() * tensor.element_size()
        assert tensor.device.type == "cpu"


def test_read_safetensors_to_another_device_allocates_nothing_on_the_host(weights_file):
    # The meta device stands in for an accelerator: every tensor is created there and filled from the
    # mapping, so no host tensor of the weights exists at any point.
    got = read_safetensors(weights_file, cast=lambda _key: torch.float32, device="meta")
    assert {t.device.type for t in got.values()} == {"meta"}
    assert got["a.weight"].dtype == torch.float32 and got["steps"].dtype == torch.int64


@pytest.mark.parametrize(("device", "read_to"), [("cpu", None), ("cuda", "cuda")])
def test_checkpoint_is_read_onto_the_store_device(tiny_sd15_path, monkeypatch, device, read_to):
    from nodes.diffusion import loader

    seen = []
    real = loader.read_weights

    def spy(path, want=None, cast=None, device=None):
        seen.append(None if device is None else torch.device(device).type)
        return real(path, want, cast)  # read to the cpu here: this machine may have no accelerator

    monkeypatch.setattr(loader, "read_weights", spy)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    store = ModelStore(DevicePolicy(torch.device(device)), vram_budget=1 << 40)
    load_checkpoint_into(store, tiny_sd15_path)
    # A small probe while detecting the family, then one pass over the weights onto the store's device.
    assert seen == [None, read_to]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_checkpoint_loads_straight_to_cuda_equal_to_cpu(tiny_sd15_path):
    cuda = ModelStore(DevicePolicy.from_env(device="cuda"))
    cpu = ModelStore(DevicePolicy.from_env(device="cpu"))
    _, on_gpu = load_checkpoint_into(cuda, tiny_sd15_path)
    _, on_cpu = load_checkpoint_into(cpu, tiny_sd15_path)
    unet_gpu = cuda.get(on_gpu["unet"].store_key, lambda: None, to_device=False)
    unet_cpu = cpu.get(on_cpu["unet"].store_key, lambda: None, to_device=False)
    assert {p.device.type for p in unet_gpu.parameters()} == {"cuda"}
    assert cuda.usage()["ram_bytes"] == 0
    for (name, a), (_, b) in zip(unet_gpu.state_dict().items(), unet_cpu.state_dict().items(), strict=True):
        assert torch.equal(a.cpu(), b.to(a.dtype)), name


def test_loaded_unet_attention_goes_through_torch_sdpa(tiny_sd15_path, model_store):
    # SDPA (flash / memory-efficient kernels on CUDA) is the attention of every loaded UNet.
    from diffusers.models.attention_processor import AttnProcessor2_0

    _, recipes = load_checkpoint_into(model_store, tiny_sd15_path)
    unet = model_store.get(recipes["unet"].store_key, lambda: None, to_device=False)
    processors = unet.attn_processors
    assert processors and all(isinstance(p, AttnProcessor2_0) for p in processors.values())
