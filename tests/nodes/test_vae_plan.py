"""VAE decode is tiled only when the device lacks the memory for it; below that it is the plain decode."""

from __future__ import annotations

import pytest
import torch

from nodes.defs.loaders import CheckpointLoaderSimple
from nodes.diffusion import vae as vae_ops
from tests.nodes.helpers_models import make_ctx

ONE_512PX_FP32 = vae_ops.DECODE_BYTES_PER_LATENT_PIXEL * 64 * 64 * 4  # about 1.6 GB


@pytest.fixture
def tiny_vae(tiny_models_dir, model_store, tmp_path):
    ctx = make_ctx(tiny_models_dir, model_store, tmp_path)
    out = CheckpointLoaderSimple().run(ctx, CheckpointLoaderSimple.Inputs(ckpt_name="tiny-sd15.safetensors"))
    return out.VAE.autoencoder(model_store)


@pytest.mark.parametrize(
    ("batch", "available", "plan"),
    [
        (1, None, "whole"),  # unknown free memory: decode whole, the out-of-memory retry stays
        (2, 8 * ONE_512PX_FP32, "whole"),
        (2, int(1.5 * ONE_512PX_FP32), "per_image"),
        (1, ONE_512PX_FP32 // 2, "tiled"),
    ],
)
def test_decode_plan_tiles_only_above_the_memory_threshold(batch, available, plan):
    latents = torch.zeros(batch, 4, 64, 64)
    got, tile = vae_ops.decode_plan(latents, torch.float32, available)
    assert got == plan
    if plan == "tiled":
        assert 16 <= tile < 64 and vae_ops.decode_bytes(torch.zeros(1, 4, tile, tile), torch.float32) <= (
            available * vae_ops.DECODE_MEMORY_SHARE
        )


def test_decode_at_small_sizes_is_the_untiled_decode_exactly(tiny_vae, monkeypatch):
    def no_tiles(*_a, **_k):
        raise AssertionError("tiled at a small size")

    monkeypatch.setattr(vae_ops, "decode_tiled", no_tiles)
    torch.manual_seed(0)
    latents = torch.randn(2, 4, 16, 24)
    expected = vae_ops.to_image(vae_ops._decode(tiny_vae, latents))
    assert torch.equal(vae_ops.decode(tiny_vae, latents), expected)  # this machine's real free memory


def test_decode_one_image_at_a_time_when_the_batch_does_not_fit(tiny_vae):
    torch.manual_seed(0)
    latents = torch.randn(3, 4, 16, 16)
    one = vae_ops.decode_bytes(latents, torch.float32)
    whole = vae_ops.decode(tiny_vae, latents)
    per_image = vae_ops.decode(tiny_vae, latents, available=int(1.5 * one / vae_ops.DECODE_MEMORY_SHARE))
    assert torch.allclose(per_image, whole, atol=1e-5)


def test_decode_tiles_when_one_image_does_not_fit(tiny_vae, monkeypatch):
    calls = []
    real = vae_ops.decode_tiled

    def spy(vae, latents, tile, overlap):
        calls.append((tile, overlap))
        return real(vae, latents, tile, overlap)

    monkeypatch.setattr(vae_ops, "decode_tiled", spy)
    torch.manual_seed(0)
    latents = torch.randn(1, 4, 40, 40)
    tile_fits = vae_ops.decode_bytes(torch.zeros(1, 4, 32, 32), torch.float32) / vae_ops.DECODE_MEMORY_SHARE
    image = vae_ops.decode(tiny_vae, latents, available=int(tile_fits) + 1)
    assert calls == [(32, 8)]
    whole = vae_ops.to_image(vae_ops._decode(tiny_vae, latents))
    assert image.shape == whole.shape
    assert float((image - whole).abs().mean()) < 0.05  # seams blended; GroupNorm differs per tile
