"""FLUX USO: SigLIP encoding, ModelPatchLoader, USOStyleReference against ComfyUI 0.3.64's numbers.

data/uso/comfyui_uso.safetensors holds ComfyUI's SigLIP hidden states, USO style tokens and FLUX
forwards (none, one and two style references) for the tiny random make-checkpoint files (seed 0)
and the inputs stored beside them; data/uso/make_comfyui_uso.py made it (see its docstring).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from engine import UserFacingError
from engine.model_store import ModelStore
from nodes.defs.clip_vision import CLIPVisionEncode, CLIPVisionLoader
from nodes.defs.unet_loader import UNETLoader
from nodes.defs.uso import ModelPatchLoader, USOStyleReference
from nodes.diffusion.checkpoint_io import CheckpointFormatError
from nodes.diffusion.flux_layout import make_flux_file
from nodes.diffusion.make_guidance import make_clip_vision
from nodes.diffusion.make_uso import make_uso_file, siglip_layout, uso_projector_layout
from nodes.types import ClipVisionOutput, Image
from tests.nodes.helpers_models import make_ctx

DATA = load_file(str(Path(__file__).parent / "data" / "uso" / "comfyui_uso.safetensors"))
MAX_REL_L2 = 1e-5


def _rel(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    return float((ours.float() - theirs).norm() / theirs.norm())


@pytest.fixture(scope="module")
def uso(tmp_path_factory):
    """A models folder with the tiny SigLIP, USO projector and FLUX dev files, and a context over it."""
    root = tmp_path_factory.mktemp("uso")
    models = root / "models"
    make_uso_file("siglip-vision", "tiny", 0, models / "clip_vision" / "siglip.safetensors")
    make_uso_file("uso-projector", "tiny", 0, models / "model_patches" / "uso.safetensors")
    make_flux_file("flux1-dev", "tiny", 0, models / "diffusion_models" / "dev.safetensors")
    make_clip_vision(models / "clip_vision" / "clip-l.safetensors", "hf", "tiny", 0)
    return make_ctx(models, ModelStore(), root)


def _encode(ctx, name: str = "siglip.safetensors") -> ClipVisionOutput:
    tower = CLIPVisionLoader().run(ctx, CLIPVisionLoader.Inputs(clip_name=name)).CLIP_VISION
    image = Image(pixels=DATA["in.image"])
    inputs = CLIPVisionEncode.Inputs(clip_vision=tower, image=image, crop="center")
    return CLIPVisionEncode().run(ctx, inputs).CLIP_VISION_OUTPUT


def _styled(ctx, times: int = 1):
    model = (
        UNETLoader().run(ctx, UNETLoader.Inputs(unet_name="dev.safetensors", weight_dtype="default")).MODEL
    )
    patch = ModelPatchLoader().run(ctx, ModelPatchLoader.Inputs(name="uso.safetensors")).MODEL_PATCH
    vision = _encode(ctx)
    for _ in range(times):
        inputs = USOStyleReference.Inputs(model=model, model_patch=patch, clip_vision_output=vision)
        model = USOStyleReference().run(ctx, inputs).MODEL
    return model


def test_siglip_encode_matches_comfyui(uso):
    out = _encode(uso)
    assert out.all_hidden_states is not None and out.all_hidden_states.shape == (1, 20, 9, 16)
    assert _rel(out.all_hidden_states, DATA["vision.all_hidden_states"]) <= MAX_REL_L2
    assert _rel(out.last_hidden_state, DATA["vision.last_hidden_state"]) <= MAX_REL_L2
    assert _rel(out.penultimate_hidden_states, DATA["vision.penultimate_hidden_states"]) <= MAX_REL_L2


@pytest.mark.parametrize("times, key", [(0, "forward.none"), (1, "forward.uso"), (2, "forward.uso2")])
def test_uso_style_reference_flux_forward_matches_comfyui(uso, times, key):
    model = _styled(uso, times)
    assert len(model.style_tokens) == times
    args = (DATA["in.x"], DATA["in.sigma"], DATA["in.context"], DATA["in.pooled"])
    extras = [{"guidance": float(DATA["in.guidance"][0])}]
    with torch.inference_mode():
        out = model.forward(uso.models, *args, extras)
    assert _rel(out, DATA[key]) <= MAX_REL_L2
    if times:
        assert _rel(out, DATA["forward.none"]) > 1e-3  # the style tokens change the prediction


def test_uso_projector_tokens_match_comfyui(uso):
    from nodes.diffusion.uso import load_uso_projector

    model = _styled(uso)
    style = model.style_tokens[0]
    with torch.inference_mode():
        tokens = style.tokens(uso.models, torch.float32, 1)
    assert _rel(tokens, DATA["tokens"]) <= MAX_REL_L2
    assert load_uso_projector(uso.models, style.path).sizes.style_tokens * 3 == tokens.shape[1]


def test_uso_style_reference_refuses_clip_vision_without_layers(uso):
    model = (
        UNETLoader().run(uso, UNETLoader.Inputs(unet_name="dev.safetensors", weight_dtype="default")).MODEL
    )
    patch = ModelPatchLoader().run(uso, ModelPatchLoader.Inputs(name="uso.safetensors")).MODEL_PATCH
    clip_out = _encode(uso, "clip-l.safetensors")
    assert clip_out.all_hidden_states is None
    inputs = USOStyleReference.Inputs(model=model, model_patch=patch, clip_vision_output=clip_out)
    with pytest.raises(UserFacingError, match="SigLIP"):
        USOStyleReference().run(uso, inputs)


def test_model_patch_loader_refuses_unknown_and_qwen_files(uso, tmp_path):
    folder = Path(uso.model_paths.resolve("model_patches", "uso.safetensors")).parent
    save_file({"foo.weight": torch.zeros(2)}, str(folder / "other.safetensors"))
    save_file({"controlnet_blocks.0.y_rms.weight": torch.zeros(2)}, str(folder / "qwen.safetensors"))
    with pytest.raises(CheckpointFormatError, match="expected a USO style projector"):
        ModelPatchLoader().run(uso, ModelPatchLoader.Inputs(name="other.safetensors"))
    with pytest.raises(CheckpointFormatError, match="Qwen-Image"):
        ModelPatchLoader().run(uso, ModelPatchLoader.Inputs(name="qwen.safetensors"))


def test_uso_full_layouts_have_the_published_shapes():
    projector = uso_projector_layout("full", torch.bfloat16)
    assert projector["feature_embedder.high_embedding_linear.0.weight"][0] == (64, 729)
    assert projector["feature_embedder.low_projection.weight"][0] == (3072, 1152)
    assert len(projector) == 18
    siglip = siglip_layout("full", torch.float16)
    assert siglip["vision_model.embeddings.position_embedding.weight"][0] == (729, 1152)
    assert siglip["vision_model.encoder.layers.26.mlp.fc1.weight"][0] == (4304, 1152)
    assert "vision_model.encoder.layers.27.mlp.fc1.weight" not in siglip


def test_uso_dit_lora_keys_read_as_native_flux_lora_pairs():
    from nodes.diffusion.lora_file import read_adapters

    down, up = torch.zeros(4, 8), torch.zeros(8, 4)
    lora = {}
    for block in (0, 18):
        for part in ("qkv_lora1", "qkv_lora2", "proj_lora1", "proj_lora2"):
            lora[f"double_blocks.{block}.processor.{part}.down.weight"] = down
            lora[f"double_blocks.{block}.processor.{part}.up.weight"] = up
    for block in (0, 37):
        for part in ("qkv_lora", "proj_lora"):
            lora[f"single_blocks.{block}.processor.{part}.down.weight"] = down
            lora[f"single_blocks.{block}.processor.{part}.up.weight"] = up
    adapters, stray = read_adapters("uso-lora.safetensors", lora)
    assert stray == []
    assert {
        "diffusion_model.double_blocks.0.img_attn.qkv",
        "diffusion_model.double_blocks.18.txt_attn.proj",
        "diffusion_model.single_blocks.0.linear1_qkv",
        "diffusion_model.single_blocks.37.linear2",
    } <= set(adapters)
    assert len(adapters) == 12


def test_uso_style_reference_refuses_non_flux_models_and_mismatched_encoders(uso):
    from nodes.diffusion.model_handle import DiffusionModel
    from nodes.diffusion.recipe import ComponentRecipe

    patch = ModelPatchLoader().run(uso, ModelPatchLoader.Inputs(name="uso.safetensors")).MODEL_PATCH
    vision = _encode(uso)
    sd15 = DiffusionModel(ComponentRecipe("unused", "sd15", "unet"))
    inputs = USOStyleReference.Inputs(model=sd15, model_patch=patch, clip_vision_output=vision)
    with pytest.raises(UserFacingError, match="USO works on FLUX"):
        USOStyleReference().run(uso, inputs)
    flux = UNETLoader().run(uso, UNETLoader.Inputs(unet_name="dev.safetensors", weight_dtype="default")).MODEL
    assert vision.all_hidden_states is not None
    wide = ClipVisionOutput(
        last_hidden_state=vision.last_hidden_state,
        penultimate_hidden_states=vision.penultimate_hidden_states,
        image_embeds=vision.image_embeds,
        all_hidden_states=torch.zeros(1, 20, 9, 32),
    )
    inputs = USOStyleReference.Inputs(model=flux, model_patch=patch, clip_vision_output=wide)
    with pytest.raises(UserFacingError, match="9 of width 16"):
        USOStyleReference().run(uso, inputs)
    shallow = ClipVisionOutput(
        last_hidden_state=vision.last_hidden_state,
        penultimate_hidden_states=vision.penultimate_hidden_states,
        image_embeds=vision.image_embeds,
        all_hidden_states=vision.all_hidden_states[:, :12],
    )
    inputs = USOStyleReference.Inputs(model=flux, model_patch=patch, clip_vision_output=shallow)
    with pytest.raises(UserFacingError, match="12 layers"):
        USOStyleReference().run(uso, inputs)


def test_siglip_so400m_config_takes_384_px_images_and_16_heads():
    from nodes.diffusion.clip_vision import siglip_config

    layout = siglip_layout("full", torch.float16)
    cfg = siglip_config({k: torch.empty(shape, device="meta") for k, (shape, _) in layout.items()})
    assert (cfg.image_size, cfg.patch_size, cfg.num_attention_heads, cfg.num_hidden_layers) == (
        384,
        14,
        16,
        27,
    )
    assert cfg.layer_norm_eps == 1e-5 and not cfg.vision_use_head
