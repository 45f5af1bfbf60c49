"""SD3 / SD3.5 files: published layouts, detection and config from tensors, loading, the MMDiT call."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
from safetensors.torch import save_file

from engine import UserFacingError
from nodes.defs.clip_loaders import TripleCLIPLoader
from nodes.defs.loaders import CheckpointLoaderSimple
from nodes.defs.model_sampling import ModelSamplingAuraFlow, ModelSamplingDiscrete, ModelSamplingSD3
from nodes.defs.sd3 import SkipLayerGuidanceSD3
from nodes.defs.text import CLIPTextEncode
from nodes.defs.unet_loader import UNETLoader
from nodes.diffusion import loader, sd3
from nodes.diffusion.checkpoint_io import CheckpointFormatError, read_weights
from nodes.diffusion.make_checkpoint import main as make_checkpoint_main
from nodes.diffusion.make_checkpoint import make_sd3_checkpoint
from nodes.diffusion.make_text_encoder import make_text_encoder
from nodes.diffusion.mmdit_layout import sd3_checkpoint_layout
from nodes.diffusion.text_encode import ClipStack
from nodes.sampling.flow import model_sampling_for
from nodes.types import SD3_LATENT, FlowSampling
from tests.nodes.helpers_models import make_ctx
from tests.shared_reference import SHARED_REFERENCE

FLOW_REFERENCE = SHARED_REFERENCE / "flow"
REFERENCE_SHA256 = "85f8fe85fb93cf4e62827ef51ec86124bf68b31955370493bcf4bb04ad024d2e"
needs_flow_reference = pytest.mark.skipif(
    not (FLOW_REFERENCE / "layouts").is_dir(), reason=f"no flow reference data at {FLOW_REFERENCE}"
)


@needs_flow_reference
def test_sd3_layout_generator_matches_published_sd35_medium_layout():
    published = json.loads((FLOW_REFERENCE / "layouts" / "sd35m.json").read_text())
    published.pop("__metadata__")
    ours = sd3_checkpoint_layout("sd3.5-medium", "reduced")
    assert {k: tuple(v["shape"]) for k, v in published.items()} == ours
    assert {v["dtype"] for v in published.values()} == {"F16"}


@pytest.mark.slow
def test_sd3_make_checkpoint_rebuilds_reference_file_byte_for_byte(tmp_path):
    out = tmp_path / "sd3.5m-random-d2.safetensors"
    argv = ["--arch", "sd3.5-medium", "--size", "reduced", "--seed", "1234", str(out)]
    assert make_checkpoint_main(argv) == 0
    assert hashlib.sha256(out.read_bytes()).hexdigest() == REFERENCE_SHA256


@pytest.mark.parametrize(
    ("arch", "depth", "grid", "dual", "qk_norm"),
    [
        ("sd3.5-medium", 24, 384, tuple(range(13)), "rms_norm"),
        ("sd3.5-large", 38, 192, (), "rms_norm"),
        ("sd3-medium", 24, 192, (), None),
    ],
)
def test_sd3_config_read_from_published_shapes(arch, depth, grid, dual, qk_norm):
    cfg = sd3.transformer_config(sd3_checkpoint_layout(arch, "full"))
    assert cfg["num_layers"] == cfg["num_attention_heads"] == depth
    assert cfg["caption_projection_dim"] == 64 * depth
    assert cfg["pos_embed_max_size"] == grid
    assert cfg["dual_attention_layers"] == dual
    assert cfg["qk_norm"] == qk_norm
    assert (cfg["in_channels"], cfg["out_channels"], cfg["joint_attention_dim"]) == (16, 16, 4096)
    vae = sd3.vae_config(sd3_checkpoint_layout(arch, "full"))
    assert vae["latent_channels"] == 16 and vae["block_out_channels"] == [128, 256, 512, 512]
    assert not vae["use_quant_conv"] and not vae["use_post_quant_conv"]


def test_sd3_tiny_file_detected_and_loaded_with_zero_key_mismatches(tiny_sd3_path):
    info = loader.inspect_checkpoint(tiny_sd3_path)
    assert (info.family, info.components) == ("sd3", ("unet", "vae"))
    sd = read_weights(tiny_sd3_path)
    for component in ("unet", "vae"):
        model, reports = loader.build_component(component, "sd3", dict(sd), torch.float32)
        assert reports[0].missing == [] and reports[0].unexpected == [], component
    assert model.config.latent_channels == 16


def test_sd3_tiny_forward_gives_velocity_of_latent_shape_and_skips_layers(tiny_sd3_path):
    sd = read_weights(tiny_sd3_path, cast=lambda _k: torch.float32)
    transformer, _ = loader.build_mmdit(sd, torch.float32)
    g = torch.Generator().manual_seed(0)
    # 33 latent rows: not a multiple of the patch size, padded and cropped back as ComfyUI does.
    x = torch.randn(2, 16, 33, 32, generator=g)
    embeds, pooled = torch.randn(2, 10, 128, generator=g), torch.randn(2, 128, generator=g)
    t = torch.tensor([900.0, 100.0])
    with torch.inference_mode():
        out = sd3.mmdit_forward(transformer, x, t, embeds, pooled, torch.device("cpu"), torch.float32)
        skipped = sd3.mmdit_forward(
            transformer, x, t, embeds, pooled, torch.device("cpu"), torch.float32, (1,)
        )
    assert out.shape == x.shape and out.dtype == torch.float32 and torch.isfinite(out).all()
    assert not torch.allclose(out, skipped)
    with pytest.raises(ValueError, match="pooled"):
        sd3.mmdit_forward(transformer, x, t, embeds, None, torch.device("cpu"), torch.float32)


def test_sd3_checkpoint_loader_gives_16_channel_model_and_a_clip_that_explains_its_absence(
    tiny_models_dir, tiny_sd3_path, model_store, tmp_path
):
    ctx = make_ctx(tiny_models_dir, model_store, tmp_path)
    node = CheckpointLoaderSimple()
    out = node.run(ctx, CheckpointLoaderSimple.Inputs(ckpt_name=tiny_sd3_path.name))
    assert out.MODEL.family == "sd3" and out.MODEL.latent_format == SD3_LATENT
    assert out.MODEL.in_channels == 16
    assert out.VAE.autoencoder(model_store).config.latent_channels == 16
    with pytest.raises(UserFacingError, match="TripleCLIPLoader"):
        out.CLIP.stack(model_store)


def test_sd3_bare_transformer_is_sent_to_unet_loader(tiny_sd3_path, tmp_path):
    sd = read_weights(tiny_sd3_path, lambda k: k.startswith(sd3.MMDIT_PREFIX))
    bare = tmp_path / "sd35m-transformer.safetensors"
    save_file({k.removeprefix(sd3.MMDIT_PREFIX): v for k, v in sd.items()}, bare)
    with pytest.raises(CheckpointFormatError, match="UNETLoader"):
        loader.inspect_checkpoint(bare)
    transformer, report = loader.build_mmdit(read_weights(bare), torch.float32, prefix="")
    assert report.missing == [] and report.unexpected == []
    assert isinstance(transformer, torch.nn.Module) and not isinstance(transformer, ClipStack)


def _sd3_model(tiny_models_dir, tiny_sd3_path, model_store, tmp_path):
    ctx = make_ctx(tiny_models_dir, model_store, tmp_path)
    out = CheckpointLoaderSimple().run(ctx, CheckpointLoaderSimple.Inputs(ckpt_name=tiny_sd3_path.name))
    return ctx, out.MODEL


def test_sd3_model_samples_as_discrete_flow_with_shift_3_until_patched(
    tiny_models_dir, tiny_sd3_path, model_store, tmp_path
):
    ctx, model = _sd3_model(tiny_models_dir, tiny_sd3_path, model_store, tmp_path)
    assert model.flow == FlowSampling("discrete_flow", 3.0, 1000.0)
    sd3_patch = ModelSamplingSD3().run(ctx, ModelSamplingSD3.Inputs(model=model, shift=6.0)).MODEL
    aura = ModelSamplingAuraFlow().run(ctx, ModelSamplingAuraFlow.Inputs(model=model)).MODEL
    assert sd3_patch.flow == FlowSampling("discrete_flow", 6.0, 1000.0)
    assert aura.flow == FlowSampling("discrete_flow", 1.73, 1.0)
    discrete = (
        ModelSamplingDiscrete()
        .run(ctx, ModelSamplingDiscrete.Inputs(model=model, sampling="v_prediction", zsnr=True))
        .MODEL
    )
    assert (discrete.flow, discrete.prediction, discrete.zsnr) == (None, "v", True)
    assert model_sampling_for(discrete).sigma_max > 4000


def test_skip_layer_guidance_node_sets_sigma_window_and_refuses_missing_blocks(
    tiny_models_dir, tiny_sd3_path, model_store, tmp_path
):
    ctx, model = _sd3_model(tiny_models_dir, tiny_sd3_path, model_store, tmp_path)
    node = SkipLayerGuidanceSD3()
    same = node.run(ctx, SkipLayerGuidanceSD3.Inputs(model=model, layers=" , ")).MODEL
    assert same is model
    guided = node.run(ctx, SkipLayerGuidanceSD3.Inputs(model=model, layers="0,1", start_percent=0.0)).MODEL
    (slg,) = guided.skip_guidance
    # Shift 3: percent 0 -> sigma 1, percent 0.15 -> 3 * 0.85 / (1 + 2 * 0.85).
    assert slg.layers == (0, 1) and slg.sigma_start == 1.0
    assert slg.sigma_end == pytest.approx(3 * 0.85 / 2.7)
    transformer = guided.load(model_store)
    x = torch.zeros(1, 16, 8, 8)
    with pytest.raises(ValueError, match=r"cannot skip blocks \[7, 8, 9\]: this model has 2 blocks"):
        sd3.mmdit_forward(
            transformer,
            x,
            torch.tensor([500.0]),
            torch.zeros(1, 4, 128),
            torch.zeros(1, 128),
            torch.device("cpu"),
            torch.float32,
            (7, 8, 9),
        )


@pytest.mark.parametrize("weight_dtype", ["default", "fp8_e4m3fn"])
def test_sd3_unet_loader_takes_bare_mmdit_with_stored_weights(
    weight_dtype, tiny_sd3_path, model_store, tmp_path
):
    sd = read_weights(tiny_sd3_path, lambda k: k.startswith(sd3.MMDIT_PREFIX))
    root = tmp_path / "models"
    (root / "diffusion_models").mkdir(parents=True)
    save_file(
        {k.removeprefix(sd3.MMDIT_PREFIX): v for k, v in sd.items()},
        root / "diffusion_models" / "m.safetensors",
    )
    ctx = make_ctx(root, model_store, tmp_path)
    model = (
        UNETLoader().run(ctx, UNETLoader.Inputs(unet_name="m.safetensors", weight_dtype=weight_dtype)).MODEL
    )
    assert model.family == "sd3" and model.latent_format == SD3_LATENT
    assert model.flow == FlowSampling("discrete_flow", 3.0, 1000.0)
    transformer = model.load(model_store)
    stored = {"default": torch.float16, "fp8_e4m3fn": torch.float8_e4m3fn}[weight_dtype]
    assert transformer.transformer_blocks[0].attn.to_q.weight.dtype == stored
    assert transformer.pos_embed.proj.weight.dtype == torch.float32
    g = torch.Generator().manual_seed(1)
    x, embeds, pooled = (
        torch.randn(1, 16, 8, 8, generator=g),
        torch.randn(1, 5, 128, generator=g),
        torch.randn(1, 128, generator=g),
    )
    with torch.inference_mode():
        out = model.forward(model_store, x, torch.tensor([600.0]), embeds, pooled)
        wide, _ = loader.build_mmdit(
            read_weights(tiny_sd3_path, cast=lambda _k: torch.float32), torch.float32
        )
        ref = sd3.mmdit_forward(
            wide, x, torch.tensor([600.0]), embeds, pooled, torch.device("cpu"), torch.float32
        )
    rel = float((out - ref).norm() / ref.norm())
    assert rel < (1e-6 if weight_dtype == "default" else 0.1)


def test_sd3_all_in_one_checkpoint_clip_encodes_like_triple_clip_loader(model_store, tmp_path):
    root = tmp_path / "models"
    make_sd3_checkpoint(
        "sd3.5-medium", "tiny", 5, root / "checkpoints" / "aio.safetensors", text_encoders=True
    )
    for kind in ("clip_l", "clip_g", "t5xxl"):
        make_text_encoder(kind, "tiny", 5, root / "text_encoders" / f"{kind}.safetensors")
    ctx = make_ctx(root, model_store, tmp_path)
    info = loader.inspect_checkpoint(root / "checkpoints" / "aio.safetensors")
    assert info.components == ("unet", "clip", "vae")
    aio = CheckpointLoaderSimple().run(ctx, CheckpointLoaderSimple.Inputs(ckpt_name="aio.safetensors")).CLIP
    names = {
        "clip_name1": "clip_l.safetensors",
        "clip_name2": "clip_g.safetensors",
        "clip_name3": "t5xxl.safetensors",
    }
    triple = TripleCLIPLoader().run(ctx, TripleCLIPLoader.Inputs(**names)).CLIP
    encoded = [
        CLIPTextEncode().run(ctx, CLIPTextEncode.Inputs(clip=clip, text="a red fox")).CONDITIONING.entries[0]
        for clip in (aio, triple)
    ]
    assert encoded[0].embeds.shape == (1, 154, 128) and encoded[0].pooled.shape == (1, 128)
    torch.testing.assert_close(encoded[0].embeds, encoded[1].embeds, rtol=0, atol=0)
    torch.testing.assert_close(encoded[0].pooled, encoded[1].pooled, rtol=0, atol=0)


def test_sd3_scaled_fp8_checkpoint_loads_with_its_components(tiny_sd3_path, tmp_path):
    from nodes.diffusion.make_scaled import to_scaled_fp8

    path = tmp_path / "sd3.5_large_fp8_scaled.safetensors"
    save_file(to_scaled_fp8(read_weights(tiny_sd3_path), sd3.MMDIT_PREFIX), path)
    assert loader.inspect_checkpoint(path).components == ("unet", "vae")


@pytest.mark.slow
def test_sd3_official_sd35_template_runs_on_a_tiny_all_in_one_checkpoint(tmp_path):
    from bench.template_coverage import installed_templates
    from diffgraph.api import Session

    _, folder = installed_templates()
    models = tmp_path / "models"
    # The template's own file name; the published file is scaled fp8 (refused), this one fp16.
    make_sd3_checkpoint(
        "sd3.5-large",
        "tiny",
        2,
        models / "checkpoints" / "sd3.5_large_fp8_scaled.safetensors",
        text_encoders=True,
    )
    session = Session(models_dir=models, input_dir=tmp_path / "input", output_dir=tmp_path / "out")
    workflow = session.load(folder / "sd3.5_simple_example.json")
    for node in workflow.prompt.values():
        if node["class_type"] == "EmptySD3LatentImage":
            node["inputs"].update(width=128, height=128)
        if node["class_type"] == "KSampler":
            node["inputs"]["steps"] = 2
    result = session.run(workflow)
    (image,) = [f for files in result.files.values() for f in files]
    assert image.suffix == ".png" and image.is_file()
