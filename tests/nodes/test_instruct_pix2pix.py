"""InstructPixToPixConditioning and 8-channel instruct-pix2pix UNets on tiny SD1.5 files."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from nodes.defs.instruct_pix2pix import InstructPixToPixConditioning
from nodes.defs.loaders import CheckpointLoaderSimple
from nodes.defs.sampler import KSampler
from nodes.defs.text import CLIPTextEncode
from nodes.diffusion import vae as vae_ops
from nodes.diffusion.checkpoint_io import CheckpointFormatError
from nodes.diffusion.loader import inspect_checkpoint
from nodes.sampling.conds import InpaintSource, inpaint_concat
from nodes.types import SD15_LATENT, CondEntry, Conditioning, Image
from tests.nodes.helpers_models import make_ctx, widened_unet_copy


@pytest.fixture(scope="module")
def ip2p_models(tiny_sd15_path, tiny_sdxl_path, tmp_path_factory) -> Path:
    """tiny-sd15 plus tiny-sd15-ip2p and tiny-sdxl-ip2p (8 input channels), tiny-sd15-10ch (10, unsupported)."""
    root = tmp_path_factory.mktemp("ip2p_models")
    (root / "checkpoints").mkdir()
    shutil.copyfile(tiny_sd15_path, root / "checkpoints" / "tiny-sd15.safetensors")
    widened_unet_copy(tiny_sd15_path, root / "checkpoints" / "tiny-sd15-ip2p.safetensors", 4, 0.3)
    widened_unet_copy(tiny_sd15_path, root / "checkpoints" / "tiny-sd15-10ch.safetensors", 6, 0.3)
    widened_unet_copy(tiny_sdxl_path, root / "checkpoints" / "tiny-sdxl-ip2p.safetensors", 4, 0.3)
    return root


@pytest.fixture
def ctx(ip2p_models, model_store, tmp_path):
    return make_ctx(ip2p_models, model_store, tmp_path)


def _load(ctx, name: str):
    return CheckpointLoaderSimple().run(ctx, CheckpointLoaderSimple.Inputs(ckpt_name=name))


def _picture(seed: int, height: int = 64, width: int = 64) -> Image:
    return Image(pixels=torch.rand((1, height, width, 3), generator=torch.Generator().manual_seed(seed)))


def _conds(ctx, clip) -> tuple[Conditioning, Conditioning]:
    enc = CLIPTextEncode()
    return (
        enc.run(ctx, CLIPTextEncode.Inputs(text="make it snowy", clip=clip)).CONDITIONING,
        enc.run(ctx, CLIPTextEncode.Inputs(text="", clip=clip)).CONDITIONING,
    )


def _ip2p(ctx, loaded, picture: Image):
    pos, neg = _conds(ctx, loaded.CLIP)
    node = InstructPixToPixConditioning()
    return node.run(ctx, node.Inputs(positive=pos, negative=neg, vae=loaded.VAE, pixels=picture))


def test_instruct_pix2pix_conditioning_attaches_the_cropped_encoding_and_hands_out_zeros(ctx):
    loaded = _load(ctx, "tiny-sd15.safetensors")
    picture = _picture(3, 70, 67)
    out = _ip2p(ctx, loaded, picture)
    expected = vae_ops.encode(loaded.VAE.autoencoder(ctx.models), picture.pixels[:, 3:67, 1:65])
    assert out.latent.samples.shape == (1, 4, 8, 8) and not out.latent.samples.any()
    for cond in (out.positive, out.negative):
        assert len(cond.entries) == 1
        torch.testing.assert_close(cond.entries[0].concat_latent, expected, rtol=0, atol=0)


@pytest.mark.parametrize("name", ["tiny-sd15-ip2p.safetensors", "tiny-sdxl-ip2p.safetensors"])
def test_instruct_pix2pix_unet_is_loaded_and_follows_the_picture(ctx, name):
    loaded = _load(ctx, name)
    assert loaded.MODEL.in_channels == 8 and loaded.MODEL.concat_kind == "ip2p"

    def sample(seed: int) -> torch.Tensor:
        out = _ip2p(ctx, loaded, _picture(seed))
        inputs = KSampler.Inputs(
            model=loaded.MODEL,
            seed=1,
            steps=2,
            cfg=4.0,
            sampler_name="euler",
            scheduler="normal",
            positive=out.positive,
            negative=out.negative,
            latent_image=out.latent,
            denoise=1.0,
        )
        return KSampler().run(ctx, inputs).LATENT.samples

    first, again, other = sample(3), sample(3), sample(4)
    assert torch.equal(first, again)
    assert float((first - other).norm() / first.norm()) > 1e-3


def test_unet_with_unsupported_extra_channels_is_refused_naming_what_runs(ip2p_models):
    with pytest.raises(CheckpointFormatError, match="10 input channels.*8-channel instruct-pix2pix"):
        inspect_checkpoint(ip2p_models / "checkpoints" / "tiny-sd15-10ch.safetensors")


def test_ip2p_concat_is_the_raw_image_latent_or_zeros():
    image = torch.randn(1, 4, 6, 5)
    source = InpaintSource(torch.zeros(2, 4, 6, 5), None, SD15_LATENT, kind="ip2p")
    shape = torch.Size((2, 4, 6, 5))
    with_image = inpaint_concat(CondEntry(embeds=torch.zeros(1, 1, 8), concat_latent=image), source, shape)
    assert torch.equal(with_image, image.repeat(2, 1, 1, 1))
    without = inpaint_concat(CondEntry(embeds=torch.zeros(1, 1, 8)), source, shape)
    assert without.shape == shape and not without.any()
