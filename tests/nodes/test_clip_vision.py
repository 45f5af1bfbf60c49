"""CLIP vision: published layouts (transformers and OpenCLIP), detection, ComfyUI's preprocessing, the nodes."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from engine.model_store import ModelStore
from nodes.defs.clip_vision import CLIPVisionEncode, CLIPVisionLoader
from nodes.diffusion.checkpoint_io import read_weights
from nodes.diffusion.clip_vision import CLIP_MEAN, CLIP_STD, build_vision_tower, preprocess, vision_config
from nodes.diffusion.make_guidance import clip_vision_layout, make_clip_vision
from nodes.types import Image
from tests.nodes.helpers_models import make_ctx

# Facts from published headers: IP-Adapter's ViT-H/14 image encoder (transformers layout) and the
# OpenCLIP ViT-H/14 visual tower (also inside sd21-unclip-h under `embedder.model.visual.`).
HF_VIT_H = {
    "vision_model.embeddings.class_embedding": (1280,),
    "vision_model.embeddings.patch_embedding.weight": (1280, 3, 14, 14),
    "vision_model.embeddings.position_embedding.weight": (257, 1280),
    "vision_model.encoder.layers.31.mlp.fc1.weight": (5120, 1280),
    "vision_model.encoder.layers.0.self_attn.q_proj.weight": (1280, 1280),
    "vision_model.post_layernorm.weight": (1280,),
    "visual_projection.weight": (1024, 1280),
}
OPENCLIP_VIT_H = {
    "visual.class_embedding": (1280,),
    "visual.positional_embedding": (257, 1280),
    "visual.proj": (1280, 1024),
    "visual.conv1.weight": (1280, 3, 14, 14),
    "visual.transformer.resblocks.31.attn.in_proj_weight": (3840, 1280),
    "visual.transformer.resblocks.0.mlp.c_fc.weight": (5120, 1280),
    "visual.ln_post.bias": (1280,),
}
# ViT-bigG/14 (ComfyUI's clip_vision_g) and ViT-L/14 (openai/clip-vit-large-patch14).
HF_VIT_BIGG = {
    "vision_model.encoder.layers.47.mlp.fc1.weight": (8192, 1664),
    "visual_projection.weight": (1280, 1664),
}
HF_VIT_L = {
    "vision_model.encoder.layers.23.mlp.fc1.weight": (4096, 1024),
    "visual_projection.weight": (768, 1024),
}


@pytest.mark.parametrize(
    ("style", "size", "facts"),
    [
        ("hf", "vit_h", HF_VIT_H),
        ("open_clip", "vit_h", OPENCLIP_VIT_H),
        ("hf", "vit_bigg", HF_VIT_BIGG),
        ("hf", "vit_l", HF_VIT_L),
    ],
)
def test_clip_vision_layouts_have_the_published_names_and_shapes(style, size, facts):
    layout = clip_vision_layout(style, size, torch.float16)
    for key, shape in facts.items():
        assert tuple(layout[key][0]) == shape, key


@pytest.mark.parametrize(
    ("size", "act", "proj"),
    [("vit_h", "gelu", 1024), ("vit_bigg", "gelu", 1280), ("vit_l", "quick_gelu", 768)],
)
def test_clip_vision_published_sizes_get_their_shipped_configs(size, act, proj):
    sd = {
        k: torch.empty(tuple(shape), device="meta")
        for k, (shape, _) in clip_vision_layout("hf", size, torch.float16).items()
    }
    name, cfg = vision_config(sd, "x")
    assert (
        name == size
        and cfg.hidden_act == act
        and cfg.projection_dim == proj
        and cfg.num_attention_heads == 16
    )


@pytest.fixture(scope="module")
def tower_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("clip_vision")
    return {s: make_clip_vision(root / f"tiny-{s}.safetensors", s, "tiny", 0) for s in ("hf", "open_clip")}


def test_clip_vision_openclip_file_equals_its_transformers_conversion(tower_files: dict[str, Path]):
    sd = read_weights(tower_files["open_clip"])
    tower = build_vision_tower(dict(sd), torch.float32, "oc")
    # The fused attention rows split into q, k, v in that order, and proj is stored transposed.
    w = sd["visual.transformer.resblocks.1.attn.in_proj_weight"]
    attn = tower.vision_model.encoder.layers[1].self_attn
    assert torch.equal(attn.k_proj.weight, w[64:128])
    assert torch.equal(tower.visual_projection.weight, sd["visual.proj"].t())
    assert torch.equal(tower.vision_model.pre_layrnorm.bias, sd["visual.ln_pre.bias"])


def test_clip_vision_preprocess_center_crop_keeps_the_middle_and_none_squashes():
    pixels = torch.zeros(1, 224, 448, 3)
    pixels[:, :, 112:336] = 1.0  # white middle square, black sides
    centre = preprocess(pixels, 224, crop=True)
    white = (1.0 - torch.tensor(CLIP_MEAN)) / torch.tensor(CLIP_STD)
    assert centre.shape == (1, 3, 224, 224)
    torch.testing.assert_close(centre[0, :, 112, 112], white)
    squashed = preprocess(pixels, 224, crop=False)
    black = -torch.tensor(CLIP_MEAN) / torch.tensor(CLIP_STD)
    torch.testing.assert_close(squashed[0, :, 112, 2], black)
    # Values are rounded to 8-bit levels before normalising.
    levels = preprocess(torch.full((1, 224, 224, 3), 0.1234), 224, crop=True)
    torch.testing.assert_close(
        levels[0, :, 0, 0], (round(0.1234 * 255) / 255 - torch.tensor(CLIP_MEAN)) / torch.tensor(CLIP_STD)
    )


def test_clip_vision_nodes_encode_an_image_the_same_from_either_layout(
    tower_files: dict[str, Path], tmp_path: Path
):
    models = tmp_path / "models" / "clip_vision"
    models.mkdir(parents=True)
    for path in tower_files.values():
        shutil.copy(path, models / path.name)
    ctx = make_ctx(tmp_path / "models", ModelStore(), tmp_path)
    image = Image(pixels=torch.rand(2, 40, 60, 3, generator=torch.Generator().manual_seed(0)))
    outs = {}
    for style in ("hf", "open_clip"):
        loader = CLIPVisionLoader()
        tower = loader.run(ctx, loader.Inputs(clip_name=f"tiny-{style}.safetensors")).CLIP_VISION
        enc = CLIPVisionEncode()
        outs[style] = enc.run(
            ctx, enc.Inputs(clip_vision=tower, image=image, crop="center")
        ).CLIP_VISION_OUTPUT
    out = outs["open_clip"]
    assert out.image_embeds.shape == (2, 32)
    assert out.last_hidden_state.shape == out.penultimate_hidden_states.shape == (2, 257, 64)
    assert not torch.equal(out.last_hidden_state, out.penultimate_hidden_states)
    # Different random weights per layout, so only shapes agree across the two files.
    assert outs["hf"].image_embeds.shape == out.image_embeds.shape
