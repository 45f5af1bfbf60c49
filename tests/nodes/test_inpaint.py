"""Inpainting: VAEEncodeForInpaint's fill and grown mask, noise masks while sampling, 9-channel UNets."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from nodes.defs.inpaint import InpaintModelConditioning, VAEEncodeForInpaint, grey_fill, grow_mask, pixel_mask
from nodes.defs.loaders import CheckpointLoaderSimple
from nodes.defs.sampler import KSampler
from nodes.defs.text import CLIPTextEncode
from nodes.types import Image, Latent, Mask
from tests.nodes.helpers_models import make_ctx, widened_unet_copy

SIZE = 64


@pytest.fixture(scope="module")
def inpaint_models(tiny_sd15_path, tmp_path_factory) -> Path:
    """tiny-sd15 plus tiny-sd15-inpaint: the same file with a 9-channel first convolution."""
    root = tmp_path_factory.mktemp("inpaint_models")
    (root / "checkpoints").mkdir()
    shutil.copyfile(tiny_sd15_path, root / "checkpoints" / "tiny-sd15.safetensors")
    widened_unet_copy(tiny_sd15_path, root / "checkpoints" / "tiny-sd15-inpaint.safetensors", 5, 0.1)
    return root


@pytest.fixture
def ctx(inpaint_models, model_store, tmp_path):
    return make_ctx(inpaint_models, model_store, tmp_path)


def _load(ctx, name: str):
    return CheckpointLoaderSimple().run(ctx, CheckpointLoaderSimple.Inputs(ckpt_name=name))


def _picture() -> torch.Tensor:
    gen = torch.Generator().manual_seed(3)
    return torch.rand((1, SIZE, SIZE, 3), generator=gen)


def _left_half_mask() -> torch.Tensor:
    mask = torch.zeros((1, SIZE, SIZE))
    mask[:, :, : SIZE // 2] = 1.0
    return mask


def _sample(ctx, model, clip, latent: Latent, positive=None, negative=None, seed: int = 1) -> torch.Tensor:
    enc = CLIPTextEncode()
    pos = positive or enc.run(ctx, CLIPTextEncode.Inputs(text="a cat", clip=clip)).CONDITIONING
    neg = negative or enc.run(ctx, CLIPTextEncode.Inputs(text="blurry", clip=clip)).CONDITIONING
    inputs = KSampler.Inputs(
        model=model,
        seed=seed,
        steps=3,
        cfg=5.0,
        sampler_name="euler",
        scheduler="normal",
        positive=pos,
        negative=neg,
        latent_image=latent,
        denoise=1.0,
    )
    return KSampler().run(ctx, inputs).LATENT.samples


def test_grow_mask_dilates_by_a_box_and_stays_binary():
    mask = torch.zeros((1, 1, 32, 32))
    mask[0, 0, 10, 10] = 0.7  # rounds to 1
    grown = grow_mask(mask, 6)
    ys, xs = torch.where(grown[0, 0] > 0)
    assert grown.shape == mask.shape and set(grown.unique().tolist()) == {0.0, 1.0}
    assert (int(ys.min()), int(ys.max()), int(xs.min()), int(xs.max())) == (8, 13, 8, 13)
    assert torch.equal(grow_mask(mask, 0), mask.round())


def test_grey_fill_replaces_only_masked_pixels():
    pixels = _picture()
    filled = grey_fill(pixels, _left_half_mask().unsqueeze(1))
    assert torch.all(filled[:, :, : SIZE // 2] == 0.5)
    assert torch.equal(filled[:, :, SIZE // 2 :], pixels[:, :, SIZE // 2 :])


def test_pixel_mask_crops_image_and_mask_to_multiples_of_8_around_the_centre():
    pixels = torch.rand((1, 70, 67, 3))
    cropped, mask = pixel_mask(pixels, torch.ones((1, 35, 30)))
    assert cropped.shape == (1, 64, 64, 3) and mask.shape == (1, 1, 64, 64)
    assert torch.equal(cropped, pixels[:, 3:67, 1:65])


def test_vae_encode_for_inpaint_gives_latent_and_grown_noise_mask(ctx):
    loaded = _load(ctx, "tiny-sd15.safetensors")
    inputs = VAEEncodeForInpaint.Inputs(
        pixels=Image(pixels=_picture()), vae=loaded.VAE, mask=Mask(mask=_left_half_mask()), grow_mask_by=6
    )
    latent = VAEEncodeForInpaint().run(ctx, inputs).LATENT
    assert latent.samples.shape == (1, 4, SIZE // 8, SIZE // 8)
    assert latent.noise_mask.shape == (1, 1, SIZE, SIZE)
    assert float(latent.noise_mask[0, 0, 0, SIZE // 2 + 2]) == 1.0  # grown 3 px past the edge
    assert float(latent.noise_mask[0, 0, 0, SIZE // 2 + 3]) == 0.0


def test_noise_mask_keeps_the_unmasked_latent_while_sampling(ctx):
    loaded = _load(ctx, "tiny-sd15.safetensors")
    start = torch.randn((1, 4, 8, 8), generator=torch.Generator().manual_seed(2))
    mask = torch.zeros((1, 1, 8, 8))
    mask[..., :4] = 1.0
    out = _sample(ctx, loaded.MODEL, loaded.CLIP, Latent(samples=start, noise_mask=mask))
    assert torch.allclose(out[..., 4:], start[..., 4:], atol=1e-5)
    assert not torch.allclose(out[..., :4], start[..., :4], atol=1e-2)


def test_loader_detects_a_9_channel_inpainting_unet(ctx):
    assert _load(ctx, "tiny-sd15-inpaint.safetensors").MODEL.in_channels == 9
    assert _load(ctx, "tiny-sd15.safetensors").MODEL.in_channels == 4


def test_inpaint_model_conditioning_feeds_the_masked_image_to_the_inpainting_unet(ctx):
    loaded = _load(ctx, "tiny-sd15-inpaint.safetensors")
    enc = CLIPTextEncode()
    pos = enc.run(ctx, CLIPTextEncode.Inputs(text="a cat", clip=loaded.CLIP)).CONDITIONING
    neg = enc.run(ctx, CLIPTextEncode.Inputs(text="blurry", clip=loaded.CLIP)).CONDITIONING

    def conditioned(pixels: torch.Tensor):
        inputs = InpaintModelConditioning.Inputs(
            positive=pos,
            negative=neg,
            vae=loaded.VAE,
            pixels=Image(pixels=pixels),
            mask=Mask(mask=_left_half_mask()),
            noise_mask=False,
        )
        return InpaintModelConditioning().run(ctx, inputs)

    a = conditioned(_picture())
    assert a.latent.noise_mask is None and a.positive.entries[0].concat_mask.shape == (1, 1, SIZE, SIZE)
    b = conditioned(torch.zeros_like(_picture()))
    # Same starting latent, different masked image: only the 9-channel input differs.
    out_a = _sample(ctx, loaded.MODEL, loaded.CLIP, a.latent, a.positive, a.negative)
    out_b = _sample(ctx, loaded.MODEL, loaded.CLIP, a.latent, b.positive, b.negative)
    assert out_a.shape == (1, 4, SIZE // 8, SIZE // 8)
    assert not torch.allclose(out_a, out_b)
    # Without any inpainting inputs the UNet gets a full mask and the blank latent, and still runs.
    empty = Latent(samples=torch.zeros((1, 4, SIZE // 8, SIZE // 8)))
    assert torch.isfinite(_sample(ctx, loaded.MODEL, loaded.CLIP, empty)).all()


def test_four_channel_model_ignores_inpainting_inputs(ctx):
    loaded = _load(ctx, "tiny-sd15.safetensors")
    enc = CLIPTextEncode()
    pos = enc.run(ctx, CLIPTextEncode.Inputs(text="a cat", clip=loaded.CLIP)).CONDITIONING
    neg = enc.run(ctx, CLIPTextEncode.Inputs(text="blurry", clip=loaded.CLIP)).CONDITIONING
    inputs = InpaintModelConditioning.Inputs(
        positive=pos,
        negative=neg,
        vae=loaded.VAE,
        pixels=Image(pixels=_picture()),
        mask=Mask(mask=_left_half_mask()),
        noise_mask=False,
    )
    out = InpaintModelConditioning().run(ctx, inputs)
    with_inputs = _sample(ctx, loaded.MODEL, loaded.CLIP, out.latent, out.positive, out.negative)
    plain = _sample(ctx, loaded.MODEL, loaded.CLIP, out.latent, pos, neg)
    assert torch.equal(with_inputs, plain)
