"""Tests for live sampler previews: Latent2RGB projection and TAESD decoding from vae_approx/."""

from __future__ import annotations

import shutil

import pytest
import torch

from engine import Environment, ModelPaths, UserFacingError
from engine.events import PreviewImage
from engine.executor import Executor
from engine.validation import validate_prompt
from nodes.media.previews import (
    find_taesd_decoder,
    latent_to_rgb_preview,
    load_taesd_decoder,
    make_previewer,
)
from nodes.types import SD15_LATENT, SDXL_LATENT
from tests.nodes.helpers_models import tiny_preview_txt2img


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


# Index layout of madebyollin's TAESD decoder Sequential: 0 Clamp, 1 conv, 2 ReLU, 3-5 Block, 6 Upsample,
# 7 conv (no bias), 8-10 Block, 11 Upsample, 12 conv, 13-15 Block, 16 Upsample, 17 conv, 18 Block, 19 conv.
MADEBYOLLIN_KEYS = {
    "1.weight",
    "1.bias",
    "3.conv.0.weight",
    "3.conv.4.bias",
    "7.weight",
    "12.weight",
    "17.weight",
    "18.conv.2.weight",
    "19.weight",
    "19.bias",
}
MADEBYOLLIN_ABSENT = {"0.weight", "2.weight", "6.weight", "7.bias", "3.skip.weight", "20.weight"}


def _write_madebyollin_decoder(path):
    """Save a random TAESD decoder in the original (Clamp-first Sequential) key layout, .pth or .safetensors."""
    from diffusers.models.autoencoders.vae import DecoderTiny
    from safetensors.torch import save_file

    torch.manual_seed(0)
    decoder = DecoderTiny(4, 3, (3, 3, 3, 1), (64, 64, 64, 64), 2, "relu", "nearest")
    original = {}
    for key, tensor in decoder.state_dict().items():
        index, _, rest = key.removeprefix("layers.").partition(".")
        original[f"{int(index) + 1}.{rest}"] = tensor
    assert original.keys() >= MADEBYOLLIN_KEYS and not MADEBYOLLIN_ABSENT & original.keys()
    if path.suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in original.items()}, str(path))
    else:
        torch.save(original, path)
    return decoder


def test_make_previewer_uses_taesd_when_decoder_file_present(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFGRAPH_ALLOW_PICKLE", "1")  # the .pth decoder is a pickle
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
    big = make_previewer(SD15_LATENT, paths, "auto", max_size=64)(torch.randn(1, 4, 12, 16))
    assert big.size == (64, 48)  # 128x96 decoded, fit inside max_size (512 px by default)


def test_make_previewer_pickle_decoder_without_opt_in_falls_back_with_warning(tmp_path, monkeypatch, caplog):
    monkeypatch.delenv("DIFFGRAPH_ALLOW_PICKLE", raising=False)
    (tmp_path / "vae_approx").mkdir()
    _write_madebyollin_decoder(tmp_path / "vae_approx" / "taesd_decoder.pth")
    with caplog.at_level("WARNING"):
        image = make_previewer(SD15_LATENT, ModelPaths(tmp_path), "auto")(torch.zeros(1, 4, 6, 6))
    assert image.size == (6, 6)  # latent resolution: the linear projection, not the 8x TAESD decode
    assert "pickle" in caplog.text and "latent2rgb" in caplog.text


def test_make_previewer_corrupt_decoder_falls_back_to_latent2rgb(tmp_path, caplog):
    (tmp_path / "vae_approx").mkdir()
    (tmp_path / "vae_approx" / "taesd_decoder.safetensors").write_bytes(
        b"\x10\x00\x00\x00\x00\x00\x00\x00{bad"
    )
    with caplog.at_level("WARNING"):
        image = make_previewer(SD15_LATENT, ModelPaths(tmp_path), "taesd")(torch.zeros(1, 4, 6, 6))
    assert image.size == (6, 6)
    assert "taesd_decoder.safetensors" in caplog.text


def test_make_previewer_auto_without_taesd_uses_latent2rgb(tmp_path):
    image = make_previewer(SD15_LATENT, ModelPaths(tmp_path), "auto")(torch.zeros(1, 4, 6, 6))
    assert image.size == (6, 6)


def test_make_previewer_taesd_missing_is_an_error_naming_the_file(tmp_path):
    with pytest.raises(UserFacingError, match="taesd_decoder"):
        make_previewer(SD15_LATENT, ModelPaths(tmp_path), "taesd")


def test_load_taesd_decoder_reads_safetensors_in_the_original_layout(tmp_path):
    (tmp_path / "vae_approx").mkdir()
    reference = _write_madebyollin_decoder(tmp_path / "vae_approx" / "taesdxl_decoder.safetensors")
    path = find_taesd_decoder(ModelPaths(tmp_path), SDXL_LATENT)
    assert path is not None and path.name == "taesdxl_decoder.safetensors"
    assert find_taesd_decoder(ModelPaths(tmp_path), SD15_LATENT) is None
    x0 = torch.randn(1, 4, 3, 5)
    with torch.no_grad():
        assert torch.allclose(load_taesd_decoder(path, 4)(x0), reference.eval()(x0))


def test_load_taesd_decoder_accepts_a_whole_diffusers_autoencoder_tiny_file(tmp_path):
    from diffusers import AutoencoderTiny
    from safetensors.torch import save_file

    torch.manual_seed(1)
    tiny = AutoencoderTiny().eval()
    save_file(tiny.state_dict(), str(tmp_path / "taesd_decoder.safetensors"))
    x0 = torch.randn(1, 4, 2, 2)
    with torch.no_grad():
        expected = tiny.decoder(x0)
        assert torch.allclose(load_taesd_decoder(tmp_path / "taesd_decoder.safetensors", 4)(x0), expected)


def test_load_taesd_decoder_wrong_file_names_it(tmp_path):
    from safetensors.torch import save_file

    save_file({"1.weight": torch.zeros(64, 16, 3, 3)}, str(tmp_path / "taesd_decoder.safetensors"))
    with pytest.raises(UserFacingError, match="taesd_decoder.safetensors is not a TAESD decoder"):
        load_taesd_decoder(tmp_path / "taesd_decoder.safetensors", 4)


# ------------------------------------------------------------------ previews of a real sampler run


@pytest.fixture(scope="module")
def preview_models(tmp_path_factory, tiny_sd15_path):
    root = tmp_path_factory.mktemp("preview_models")
    (root / "checkpoints").mkdir()
    (root / "vae_approx").mkdir()
    shutil.copyfile(tiny_sd15_path, root / "checkpoints" / "tiny.safetensors")
    _write_madebyollin_decoder(root / "vae_approx" / "taesd_decoder.safetensors")
    return root


def _sampler_previews(models_root, model_store, tmp_path, extra_data):
    """Run a 2-step 64x64 txt2img on the tiny SD1.5 and return the preview images the sampler sent."""
    from nodes.pack import build_registry

    registry = build_registry(ModelPaths(models_root), tmp_path)
    env = Environment(tmp_path / "out", tmp_path / "tmp", tmp_path, model_store, ModelPaths(models_root))
    prompt = tiny_preview_txt2img(2)
    checked = validate_prompt(prompt, registry, env=env)
    assert checked.ok, checked.node_errors
    events = []
    result = Executor(registry, env).execute(
        checked.prompt, prompt_id="p", outputs=checked.outputs, extra_data=extra_data, sink=events.append
    )
    assert result.status == "success", result.error and result.error.data()
    return [e.image for e in events if isinstance(e, PreviewImage) and e.node_id == "3"]


def test_sampler_previews_use_taesd_when_present_unless_latent2rgb_is_asked(
    preview_models, model_store, tmp_path
):
    taesd = _sampler_previews(preview_models, model_store, tmp_path / "a", {})
    assert len(taesd) == 2 and {image.size for image in taesd} == {(64, 64)}  # decoded: 8x the latent
    projected = _sampler_previews(
        preview_models, model_store, tmp_path / "b", {"preview_method": "latent2rgb"}
    )
    assert len(projected) == 2 and {image.size for image in projected} == {(8, 8)}  # latent resolution


# comfyui-protocol.md section 5 (ComfyUI's latent_formats): rows per latent channel -> R, G, B.
SD15_FACTORS = [
    [0.3512, 0.2297, 0.3227],
    [0.3250, 0.4974, 0.2350],
    [-0.2829, 0.1762, 0.2721],
    [-0.2120, -0.2616, -0.7177],
]
SDXL_FACTORS = [
    [0.3651, 0.4232, 0.4341],
    [-0.2533, -0.0042, 0.1068],
    [0.1076, 0.1111, -0.0362],
    [-0.3165, -0.2492, -0.2188],
]


@pytest.mark.parametrize(
    ("family", "factors", "bias", "taesd"),
    [
        ("sd15", SD15_FACTORS, None, "taesd_decoder"),
        ("sd2", SD15_FACTORS, None, "taesd_decoder"),
        ("sd2-v", SD15_FACTORS, None, "taesd_decoder"),
        ("sdxl", SDXL_FACTORS, [0.1084, -0.0175, -0.0011], "taesdxl_decoder"),
        ("sdxl-refiner", SDXL_FACTORS, [0.1084, -0.0175, -0.0011], "taesdxl_decoder"),
    ],
)
def test_every_family_previews_with_comfyui_factors(family, factors, bias, taesd):
    from nodes.diffusion.families import latent_format

    fmt = latent_format(family)
    assert [list(row) for row in fmt.rgb_factors] == factors
    assert (list(fmt.rgb_bias) if fmt.rgb_bias else None) == bias
    assert fmt.taesd_decoder == taesd


def test_run_previewer_fits_pictures_to_the_environment_preview_size(tmp_path):
    from types import SimpleNamespace

    from nodes.media.previews import run_previewer

    ctx = SimpleNamespace(extra_data={}, model_paths=ModelPaths(tmp_path), preview_size=16)
    image = run_previewer(ctx, SD15_LATENT)(torch.zeros(1, 4, 64, 48))
    assert image.size == (12, 16)  # (width, height) of a 48x64 latent
