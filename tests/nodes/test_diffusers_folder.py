"""Diffusers folders load through CheckpointLoaderSimple/DiffusersLoader exactly like the single file."""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from transformers import CLIPTextConfig, CLIPTextModel

from engine import ModelPaths
from nodes.defs.loaders import CheckpointLoaderSimple, CLIPSetLastLayer, DiffusersLoader, LoraLoaderModelOnly
from nodes.defs.text import CLIPTextEncode
from nodes.defs.vae import VAEDecode
from nodes.diffusion import families, loader
from nodes.diffusion.checkpoint_io import PickleRefusedError
from nodes.diffusion.diffusers_folder import TEXT_FOLDERS, detect_family
from nodes.diffusion.recipe import Variant
from nodes.diffusion.text_encode import ClipLayerError, run_encoder
from nodes.types import Latent
from tests.nodes.helpers_models import make_ctx

PIPELINES = {
    "sd15": "StableDiffusionPipeline",
    "sd2-v": "StableDiffusionPipeline",
    "sdxl": "StableDiffusionXLPipeline",
    "sdxl-refiner": "StableDiffusionXLImg2ImgPipeline",
}


def write_folder(
    store, ckpt: Path, arch: str, out: Path, *, fp16_vae: bool = False, pickle: bool = False
) -> Path:
    """A diffusers folder holding the tiny checkpoint's weights, saved with save_pretrained."""
    _, recipes = loader.load_checkpoint_into(store, ckpt)
    unet = loader.load_component_into(store, recipes["unet"])
    unet.save_pretrained(out / "unet", safe_serialization=not pickle)
    vae = copy.deepcopy(loader.load_component_into(store, recipes["vae"]))
    vae = vae.half() if fp16_vae else vae
    vae.save_pretrained(out / "vae", variant="fp16" if fp16_vae else None)
    stack = loader.load_component_into(store, recipes["clip"])
    index = {"_class_name": PIPELINES[arch], "text_encoder": [None, None], "text_encoder_2": [None, None]}
    for spec, sub in zip(stack.specs, TEXT_FOLDERS[arch], strict=True):
        stack.encoders[spec.name].save_pretrained(out / sub)
        index[sub] = ["transformers", type(stack.encoders[spec.name]).__name__]
    (out / "scheduler").mkdir()
    prediction = "v_prediction" if arch == "sd2-v" else "epsilon"
    (out / "scheduler" / "scheduler_config.json").write_text(json.dumps({"prediction_type": prediction}))
    index.update(unet=["diffusers", "UNet2DConditionModel"], vae=["diffusers", "AutoencoderKL"])
    index["scheduler"] = ["diffusers", "EulerDiscreteScheduler"]
    (out / "model_index.json").write_text(json.dumps(index))
    return out


def _outputs(ctx, name):
    return CheckpointLoaderSimple().run(ctx, CheckpointLoaderSimple.Inputs(ckpt_name=name))


def _same_results(ctx, a, b, arch):
    assert (a.MODEL.family, a.MODEL.prediction, a.MODEL.adm) == (
        b.MODEL.family,
        b.MODEL.prediction,
        b.MODEL.adm,
    )
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, 8, 8, generator=g)
    width = {"sdxl": 128}.get(arch, 64)
    embeds, pooled = torch.randn(1, 77, width, generator=g), torch.randn(1, 64, generator=g)
    t = torch.tensor([500.0])
    torch.testing.assert_close(
        a.MODEL.forward(ctx.models, x, t, embeds, pooled), b.MODEL.forward(ctx.models, x, t, embeds, pooled)
    )
    ea, eb = (
        CLIPTextEncode()
        .run(ctx, CLIPTextEncode.Inputs(text="a (red:1.2) cat", clip=out.CLIP))
        .CONDITIONING.entries[0]
        for out in (a, b)
    )
    torch.testing.assert_close(ea.embeds, eb.embeds, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ea.pooled, eb.pooled, rtol=1e-5, atol=1e-5)
    latent = Latent(samples=torch.randn(1, 4, 4, 4, generator=g))
    da = VAEDecode().run(ctx, VAEDecode.Inputs(samples=latent, vae=a.VAE)).IMAGE.pixels
    db = VAEDecode().run(ctx, VAEDecode.Inputs(samples=latent, vae=b.VAE)).IMAGE.pixels
    torch.testing.assert_close(da, db)


@pytest.mark.parametrize("arch", ["sd15", "sd2-v", "sdxl", "sdxl-refiner"])
def test_checkpoint_loader_diffusers_folder_equals_single_file(
    arch, tiny_checkpoint_paths, model_store, tmp_path
):
    models = tmp_path / "models"
    ckpt = models / "checkpoints" / "tiny.safetensors"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(tiny_checkpoint_paths[arch].read_bytes())
    write_folder(model_store, ckpt, arch, models / "checkpoints" / f"tiny-{arch}", fp16_vae=arch == "sd15")
    assert f"tiny-{arch}" in ModelPaths(models).list("checkpoints")
    ctx = make_ctx(models, model_store, tmp_path)
    _same_results(ctx, _outputs(ctx, "tiny.safetensors"), _outputs(ctx, f"tiny-{arch}"), arch)


def test_diffusers_loader_reads_models_diffusers(tiny_sd15_path, model_store, tmp_path):
    models = tmp_path / "models"
    write_folder(model_store, tiny_sd15_path, "sd15", models / "diffusers" / "tiny")
    ctx = make_ctx(models, model_store, tmp_path)
    out = DiffusersLoader().run(ctx, DiffusersLoader.Inputs(model_path="tiny"))
    assert out.MODEL.family == "sd15" and out.CLIP.recipe.variant is Variant.DIFFUSERS
    assert ModelPaths(models).list("diffusers") == ["tiny"]


def test_diffusers_folder_with_pickle_weights_needs_opt_in(
    tiny_sd15_path, model_store, tmp_path, monkeypatch
):
    folder = write_folder(model_store, tiny_sd15_path, "sd15", tmp_path / "pkl", pickle=True)
    monkeypatch.delenv("DIFFGRAPH_ALLOW_PICKLE", raising=False)
    info = loader.inspect_checkpoint(folder)
    recipe = loader.ComponentRecipe(str(folder), info.family, "unet", variant=Variant.DIFFUSERS)
    with pytest.raises(PickleRefusedError, match="pkl/unet.*DIFFGRAPH_ALLOW_PICKLE=1"):
        loader.load_component(recipe, torch.float32)
    monkeypatch.setenv("DIFFGRAPH_ALLOW_PICKLE", "1")
    assert loader.load_component(recipe, torch.float32).config.in_channels == 4


def test_lora_with_ldm_names_patches_folder_like_single_file(tiny_sd15_path, model_store, tmp_path):
    from tests.nodes.test_vae_latent import _kohya_lora

    models = tmp_path / "models"
    (models / "checkpoints").mkdir(parents=True)
    (models / "checkpoints" / "tiny.safetensors").write_bytes(tiny_sd15_path.read_bytes())
    write_folder(model_store, tiny_sd15_path, "sd15", models / "checkpoints" / "folder")
    (models / "loras").mkdir()
    _kohya_lora(models / "loras" / "k.safetensors", {"lora_unet_output_blocks_11_1_proj_in": (32, 32)})
    ctx = make_ctx(models, model_store, tmp_path)
    weights = []
    for name in ("tiny.safetensors", "folder"):
        model = _outputs(ctx, name).MODEL
        patched = LoraLoaderModelOnly().run(
            ctx, LoraLoaderModelOnly.Inputs(model=model, lora_name="k.safetensors")
        )
        weights.append(patched.MODEL.load(ctx.models).up_blocks[3].attentions[2].proj_in.weight)
    assert not torch.equal(
        weights[0], _outputs(ctx, "folder").MODEL.load(ctx.models).up_blocks[3].attentions[2].proj_in.weight
    )
    torch.testing.assert_close(weights[0], weights[1])


def test_diffusers_folder_without_unet_is_named(tmp_path):
    folder = tmp_path / "sd3"
    (folder / "transformer").mkdir(parents=True)
    index = {"_class_name": "StableDiffusion3Pipeline", "transformer": ["diffusers", "SD3Transformer2DModel"]}
    (folder / "model_index.json").write_text(json.dumps(index))
    # A transformer pipeline is read as FLUX/SD3 (tests/nodes/test_flow_folder.py): its gaps are named.
    with pytest.raises(loader.CheckpointFormatError, match="sd3/transformer: config.json is missing"):
        detect_family(folder)
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "KandinskyPipeline"}))
    with pytest.raises(
        loader.CheckpointFormatError, match="sd3 is a diffusers KandinskyPipeline folder without unet/"
    ):
        detect_family(folder)


def _clip(layers: int, seed: int = 0) -> CLIPTextModel:
    torch.manual_seed(seed)
    cfg = CLIPTextConfig(
        hidden_size=64, intermediate_size=128, num_hidden_layers=layers, num_attention_heads=1
    )
    return CLIPTextModel(cfg).eval()


def test_truncated_sd2_text_encoder_counts_layers_like_comfyui(tmp_path):
    full = _clip(24)
    truncated = _clip(23)
    truncated.load_state_dict(full.state_dict(), strict=False)
    sd2 = families.family_spec("sd2").text_encoders[0]
    spec = replace(
        sd2, default_layer=-2, layer_norm_hidden_state=True, with_projection=False, missing_top_layers=1
    )
    ids = torch.tensor([[49406, 2368, 49407] + [0] * 74])
    with torch.inference_mode():
        expected = full.final_layer_norm(full(input_ids=ids, output_hidden_states=True).hidden_states[-2])
        got, _ = run_encoder(truncated, spec, ids, None)
        torch.testing.assert_close(got, expected)
        deeper, _ = run_encoder(truncated, spec, ids, -3)
        expected = full.final_layer_norm(full(input_ids=ids, output_hidden_states=True).hidden_states[-3])
        torch.testing.assert_close(deeper, expected)
        with pytest.raises(ClipLayerError, match="use -2 or lower"):
            run_encoder(truncated, spec, ids, -1)


def test_sd2_folder_with_23_block_text_encoder_is_marked_truncated(
    tiny_checkpoint_paths, model_store, tmp_path
):
    folder = write_folder(model_store, tiny_checkpoint_paths["sd2-v"], "sd2-v", tmp_path / "sd2")
    cfg = json.loads((folder / "text_encoder" / "config.json").read_text())
    _clip(23).save_pretrained(folder / "text_encoder")
    (folder / "text_encoder" / "config.json").write_text(json.dumps({**cfg, "num_hidden_layers": 23}))
    ctx = make_ctx(tmp_path, model_store, tmp_path)
    out = loader.load_checkpoint_into(model_store, folder)[1]["clip"]
    stack = loader.load_component_into(model_store, out)
    assert stack.specs[0].missing_top_layers == 1
    from nodes.diffusion.model_handle import ClipHandle

    clip = (
        CLIPSetLastLayer().run(ctx, CLIPSetLastLayer.Inputs(clip=ClipHandle(out), stop_at_clip_layer=-1)).CLIP
    )
    with pytest.raises(ClipLayerError):
        CLIPTextEncode().run(ctx, CLIPTextEncode.Inputs(text="cat", clip=clip))
