"""Tests for live sampler previews: Latent2RGB projection and TAESD decoding from vae_approx/."""

from __future__ import annotations

import pytest
import torch

from engine import ModelPaths, UserFacingError
from nodes.previews import (
    find_taesd_decoder,
    latent_to_rgb_preview,
    load_taesd_decoder,
    make_previewer,
)
from nodes.types import SD15_LATENT, SDXL_LATENT


def test_latent_to_rgb_preview_matches_factor_projection():
    x0 = torch.randn(2, 4, 8, 12, generator=torch.Generator().manual_seed(0))
    image = latent_to_rgb_preview(x0, SD15_LATENT)
    assert image.size == (12, 8) and image.mode == "RGB"
    factors = torch.tensor(SD15_LATENT.rgb_factors)
    rgb = torch.einsum("chw,cr->hwr", x0[0], factors)
    expected = ((rgb + 1) / 2).clamp(0, 1).mul(255).to(torch.uint8)
    got = torch.tensor(list(image.getdata()), dtype=torch.uint8).reshape(8, 12, 3)
    assert torch.equal(got, expected)


def test_latent_to_rgb_preview_applies_sdxl_bias():
    zeros = torch.zeros(1, 4, 4, 4)
    pixel = latent_to_rgb_preview(zeros, SDXL_LATENT).getpixel((0, 0))
    expected = tuple(int((b + 1) / 2 * 255) for b in SDXL_LATENT.rgb_bias)
    assert pixel == expected


def test_latent_to_rgb_preview_fits_inside_max_size():
    image = latent_to_rgb_preview(torch.zeros(1, 4, 100, 300), SD15_LATENT, max_size=64)
    assert max(image.size) == 64 and image.size[0] > image.size[1]


def test_latent_to_rgb_preview_rejects_wrong_channel_count():
    with pytest.raises(UserFacingError, match="channels"):
        latent_to_rgb_preview(torch.zeros(1, 16, 4, 4), SD15_LATENT)


def _write_madebyollin_decoder(path):
    """Save a random TAESD decoder in the original (Clamp-first Sequential) key layout."""
    from diffusers.models.autoencoders.vae import DecoderTiny

    torch.manual_seed(0)
    decoder = DecoderTiny(4, 3, (3, 3, 3, 1), (64, 64, 64, 64), 2, "relu", "nearest")
    original = {}
    for key, tensor in decoder.state_dict().items():
        index, _, rest = key.removeprefix("layers.").partition(".")
        original[f"{int(index) + 1}.{rest}"] = tensor
    torch.save(original, path)
    return decoder


def test_make_previewer_uses_taesd_when_decoder_file_present(tmp_path):
    (tmp_path / "vae_approx").mkdir()
    reference = _write_madebyollin_decoder(tmp_path / "vae_approx" / "taesd_decoder.pth")
    paths = ModelPaths(tmp_path)
    assert find_taesd_decoder(paths, SD15_LATENT).name == "taesd_decoder.pth"
    assert find_taesd_decoder(paths, SDXL_LATENT) is None
    loaded = load_taesd_decoder(find_taesd_decoder(paths, SD15_LATENT), 4)
    x0 = torch.randn(1, 4, 4, 4)
    with torch.no_grad():
        assert torch.allclose(loaded(x0), reference.eval()(x0))
    image = make_previewer(SD15_LATENT, paths, "auto")(x0)
    assert image.size == (32, 32)


def test_make_previewer_auto_without_taesd_uses_latent2rgb(tmp_path):
    image = make_previewer(SD15_LATENT, ModelPaths(tmp_path), "auto")(torch.zeros(1, 4, 6, 6))
    assert image.size == (6, 6)


def test_make_previewer_taesd_missing_is_an_error_naming_the_file(tmp_path):
    with pytest.raises(UserFacingError, match="taesd_decoder"):
        make_previewer(SD15_LATENT, ModelPaths(tmp_path), "taesd")
