"""FLUX.1 files: published layouts, detection, BFL -> diffusers conversion, stored-dtype weights, VAE."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
from diffusers.loaders import single_file_utils as sfu
from safetensors.torch import save_file

from nodes.diffusion import flux
from nodes.diffusion.checkpoint_io import CheckpointFormatError
from nodes.diffusion.flux_layout import flux_ae_layout, flux_layout, make_flux_file
from nodes.diffusion.loader import inspect_vae_file, load_component
from nodes.diffusion.recipe import ComponentRecipe, Variant
from nodes.diffusion.unet_file import inspect_diffusion_model, load_diffusion_model
from nodes.diffusion.vae import decode
from tests.shared_reference import SHARED_REFERENCE, needs_reference

LAYOUTS = SHARED_REFERENCE / "flow" / "layouts"
FLUX_AE_SHA256 = "abbea3e531fc8789e73da323ce52bb0cb4655912bf6738d5bdee4a0c53e268f6"


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("flux")
    paths = {}
    for arch in ("flux1-dev", "flux1-schnell", "flux-ae"):
        paths[arch] = make_flux_file(arch, "tiny", 3, root / f"{arch}.safetensors")
    return paths


def _recipe(path, family, weight_dtype="default"):
    return ComponentRecipe(
        str(path), family, "unet", variant=Variant.DIFFUSION_FILE, weight_dtype=weight_dtype
    )


@needs_reference
@pytest.mark.parametrize("arch", ["flux1-dev", "flux1-schnell", "flux-ae"])
def test_flux_layouts_match_the_published_files(arch):
    published = json.loads((LAYOUTS / f"{arch}.json").read_text())
    ours = flux_ae_layout("reduced") if arch == "flux-ae" else flux_layout(arch, "reduced")
    assert {k: list(v) for k, v in ours.items()} == {
        k: v["shape"] for k, v in published.items() if k != "__metadata__"
    }


@pytest.mark.slow
def test_flux_make_checkpoint_writes_the_reference_autoencoder_byte_for_byte(tmp_path):
    path = make_flux_file("flux-ae", "reduced", 1234, tmp_path / "ae.safetensors")
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    assert digest.hexdigest() == FLUX_AE_SHA256


def test_flux_detects_dev_and_schnell_from_tensors(tiny_files):
    assert inspect_diffusion_model(tiny_files["flux1-dev"]) == "flux-dev"
    assert inspect_diffusion_model(tiny_files["flux1-schnell"]) == "flux-schnell"


def test_flux_unknown_file_error_names_the_expected_layout(tiny_files):
    with pytest.raises(CheckpointFormatError, match="double_blocks"):
        inspect_diffusion_model(tiny_files["flux-ae"])


def _meta_sd(arch):
    """The reduced layout with cheap tensors whose rows number themselves (expanded views, no copies)."""
    out = {}
    for key, shape in flux_layout(arch, "reduced").items():
        rows = torch.arange(shape[0], dtype=torch.float32) + (hash(key) % 1000) * 1e4
        out[key] = rows if len(shape) == 1 else rows[:, None].expand(*shape)
    return out


def test_flux_conversion_agrees_with_diffusers_own_converter():
    ours = flux.bfl_to_diffusers(_meta_sd("flux1-dev"), "", 3072)
    theirs = sfu.convert_flux_transformer_checkpoint_to_diffusers(_meta_sd("flux1-dev"))
    assert set(ours) == set(theirs)
    for key, tensor in ours.items():
        assert tensor.shape == theirs[key].shape, key
        assert torch.equal(
            tensor.reshape(tensor.shape[0], -1)[:, 0], theirs[key].reshape(tensor.shape[0], -1)[:, 0]
        )


def test_flux_linear_weights_keep_their_stored_dtype(tiny_files):
    model = load_diffusion_model(_recipe(tiny_files["flux1-dev"], "flux-dev"), torch.float32)
    linear = model.transformer.transformer_blocks[0].attn.to_q
    assert linear.weight.dtype == torch.bfloat16
    assert model.transformer.transformer_blocks[0].attn.norm_q.weight.dtype == torch.float32
    fp8 = load_diffusion_model(_recipe(tiny_files["flux1-dev"], "flux-dev", "fp8_e4m3fn"), torch.float32)
    assert fp8.transformer.transformer_blocks[0].attn.to_q.weight.dtype == torch.float8_e4m3fn


def _run(model, x, guidance=3.5):
    torch.manual_seed(0)
    context = torch.randn(1, 8, 128)
    pooled = torch.randn(1, 64)
    g = torch.tensor([guidance]) if model.has_guidance else None
    with torch.inference_mode():
        return model(x, torch.tensor([0.7]), context, pooled, g)


def test_flux_forward_keeps_the_latent_shape_and_uses_guidance(tiny_files):
    model = load_diffusion_model(_recipe(tiny_files["flux1-dev"], "flux-dev"), torch.float32)
    x = torch.randn(1, 16, 6, 10)
    out = _run(model, x)
    assert out.shape == x.shape and out.dtype == torch.float32
    assert not torch.allclose(out, _run(model, x, guidance=1.0))
    odd = torch.randn(1, 16, 5, 7)
    assert _run(model, odd).shape == odd.shape


def test_flux_diffusers_folder_gives_the_single_file_result(tiny_files, tmp_path):
    single = load_diffusion_model(_recipe(tiny_files["flux1-schnell"], "flux-schnell"), torch.float32)
    folder = tmp_path / "flux-folder"
    folder.mkdir()
    state = {k: v.contiguous() for k, v in single.transformer.state_dict().items()}
    save_file(state, str(folder / "diffusion_pytorch_model.safetensors"))
    (folder / "config.json").write_text(json.dumps(dict(single.transformer.config)))
    assert inspect_diffusion_model(folder) == "flux-schnell"
    again = load_diffusion_model(_recipe(folder, "flux-schnell"), torch.float32)
    x = torch.randn(1, 16, 4, 4)
    torch.testing.assert_close(_run(again, x), _run(single, x))


def test_flux_autoencoder_file_decodes_16_channel_latents(tiny_files):
    path = tiny_files["flux-ae"]
    assert inspect_vae_file(path) == "flux"
    vae = load_component(ComponentRecipe(str(path), "flux", "vae", variant=Variant.VAE_FILE), torch.float32)
    assert vae.config.latent_channels == 16
    image = decode(vae, torch.randn(1, 16, 4, 4))
    assert image.shape[1:3] == (32, 32)


def test_flux_all_in_one_checkpoint_gives_model_and_vae(tiny_files, tmp_path, model_store):
    from safetensors.torch import load_file

    from nodes.defs.loaders import checkpoint_outputs

    parts = {f"model.diffusion_model.{k}": v for k, v in load_file(str(tiny_files["flux1-dev"])).items()}
    parts.update({f"vae.{k}": v for k, v in load_file(str(tiny_files["flux-ae"])).items()})
    path = tmp_path / "flux1-dev-all-in-one.safetensors"
    save_file(parts, str(path))
    model, clip, vae = checkpoint_outputs(model_store, path)
    assert model.family == "flux-dev" and model.flow is not None and model.flow.kind == "flux"
    assert vae.latent_format.channels == 16
    loaded = model.load(model_store)
    assert isinstance(loaded, flux.FluxModel)
    # The transformer's matrices keep the file's bf16 (widened per layer), not a float32 copy.
    assert {p.dtype for p in loaded.parameters() if p.ndim == 2} == {torch.bfloat16}
    assert vae.autoencoder(model_store).config.latent_channels == 16


def test_flux_fp8_weights_upcast_with_exact_subnormals():
    layer = torch.nn.Linear(4, 2, bias=False)
    # 2^-9 is e4m3fn's smallest subnormal, 3 * 2^-9 another subnormal, 0.5 a normal value.
    values = torch.tensor([[2.0**-9, 3 * 2.0**-9, 0.5, -(2.0**-8)], [0.0, -(2.0**-9), 1.0, 2.0**-7]])
    layer.weight.data = values.to(torch.float8_e4m3fn)
    flux.keep_linear_weights(layer, torch.float32)
    x = torch.eye(4)
    torch.testing.assert_close(layer(x), x @ values.T, rtol=0, atol=0)


def test_flux_disabled_guidance_drops_the_guidance_embedding(tiny_files):
    model = load_diffusion_model(_recipe(tiny_files["flux1-dev"], "flux-dev"), torch.float32)
    x = torch.randn(1, 16, 4, 4)
    context, pooled = torch.randn(1, 8, 128), torch.randn(1, 64)
    with torch.inference_mode():
        off = model(x, torch.tensor([0.7]), context, pooled, None)
        on = model(x, torch.tensor([0.7]), context, pooled, torch.tensor([3.5]))
        # Zeroing the guidance embedder's output layer is the same as leaving it out.
        out_layer = model.transformer.time_text_embed.guidance_embedder.linear_2
        out_layer.weight.zero_()
        out_layer.bias.zero_()
        zeroed = model(x, torch.tensor([0.7]), context, pooled, torch.tensor([3.5]))
    assert not torch.allclose(off, on)
    torch.testing.assert_close(off, zeroed)


def test_flux_diffusers_folder_is_listed_as_one_model(tiny_files, tmp_path):
    from engine import ModelPaths

    folder = tmp_path / "diffusion_models" / "flux-schnell-diffusers"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "diffusion_pytorch_model.safetensors").write_bytes(b"")
    assert ModelPaths(tmp_path).list("diffusion_models") == ["flux-schnell-diffusers"]
