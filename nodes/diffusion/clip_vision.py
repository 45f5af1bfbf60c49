"""CLIP vision towers: layout detection, OpenCLIP -> transformers conversion, preprocessing, encoding.

Files come in the transformers layout (`vision_model.*` plus `visual_projection.weight`, as the
IP-Adapter image encoders and ComfyUI's clip_vision_g are published) or the OpenCLIP one (`visual.*`
with fused attention, as in open_clip checkpoints and inside SD2.1 unCLIP files under
`embedder.model.visual.`). The published towers are told apart by depth as ComfyUI does (48 layers
ViT-bigG/14, 32 ViT-H/14, 24 ViT-L/14); their configs ship in configs/. Shallower files (test files)
take ViT-H's settings with every size read from the tensors.

SigLIP towers (sigclip_vision_patch14_384: no class token, no projection, a bias on the patch
embedding) are built as transformers' SiglipVisionModel with ComfyUI's settings: layer norms with
eps 1e-5, 16 heads at the published width of 1152 (72 channels each, as for test widths divisible by
72; other widths 8-channel heads), the attention-pooling head left out (ComfyUI never runs it), mean
and std 0.5, and the image size from the position count (384 px for the published 729 positions of
14 px patches, whose last 6 px the patch grid leaves out). Their outputs carry every layer's hidden state.
"""

from __future__ import annotations

import json
import re
from importlib import resources
from typing import Any

import torch
from transformers import (
    CLIPVisionConfig,
    CLIPVisionModelWithProjection,
    SiglipVisionConfig,
    SiglipVisionModel,
)

from nodes.diffusion.builders import to_model
from nodes.diffusion.checkpoint_io import CheckpointFormatError

HF_PREFIX = "vision_model."
OPENCLIP_MARK = "transformer.resblocks.0.attn.in_proj_weight"
# OpenAI CLIP's normalisation, which every tower here was trained with.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
SIGLIP_MEAN = SIGLIP_STD = (0.5, 0.5, 0.5)
SIGLIP_HEAD_DIM = 72
# Published SigLIP input sizes that are not a whole number of patches: so400m/14 takes 384 px images
# (27 patches of 14 px per side, the last 6 px unused). Keyed by (positions, patch size).
SIGLIP_IMAGE_SIZES = {(729, 14): 384}
# ComfyUI builds SigLIP's layer norms with torch's default eps, not SigLIP's own 1e-6.
SIGLIP_NORM_EPS = 1e-5
VisionTower = CLIPVisionModelWithProjection | SiglipVisionModel
_RENAMES = {
    "class_embedding": "embeddings.class_embedding",
    "conv1.weight": "embeddings.patch_embedding.weight",
    "positional_embedding": "embeddings.position_embedding.weight",
    "ln_pre.weight": "pre_layrnorm.weight",
    "ln_pre.bias": "pre_layrnorm.bias",
    "ln_post.weight": "post_layernorm.weight",
    "ln_post.bias": "post_layernorm.bias",
}
_BLOCK_RENAMES = {
    "ln_1": "layer_norm1",
    "ln_2": "layer_norm2",
    "mlp.c_fc": "mlp.fc1",
    "mlp.c_proj": "mlp.fc2",
    "attn.out_proj": "self_attn.out_proj",
}


def find_openclip_prefix(keys: list[str]) -> str | None:
    """The prefix before `transformer.resblocks.0.attn.in_proj_weight` of an OpenCLIP visual tower."""
    for key in keys:
        if key.endswith(OPENCLIP_MARK) and (key == "visual." + OPENCLIP_MARK or ".visual." in key):
            return key[: -len(OPENCLIP_MARK)]
    return None


def openclip_to_hf(sd: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """An OpenCLIP visual tower (keys under `prefix`) renamed to transformers' CLIPVisionModelWithProjection."""
    out: dict[str, torch.Tensor] = {}
    block = re.compile(r"transformer\.resblocks\.(\d+)\.(.+)$")
    for key, value in sd.items():
        if not key.startswith(prefix):
            continue
        name = key[len(prefix) :]
        if name == "proj":
            out["visual_projection.weight"] = value.t().contiguous()
        elif name in _RENAMES:
            out[HF_PREFIX + _RENAMES[name]] = value
        elif m := block.match(name):
            layer, rest = f"{HF_PREFIX}encoder.layers.{m.group(1)}.", m.group(2)
            if rest.startswith("attn.in_proj_"):
                kind = rest.removeprefix("attn.in_proj_")
                for part, chunk in zip(("q", "k", "v"), value.chunk(3, dim=0), strict=True):
                    out[f"{layer}self_attn.{part}_proj.{kind}"] = chunk.contiguous()
            else:
                head, _, tail = rest.rpartition(".")
                out[layer + _BLOCK_RENAMES.get(head, head) + "." + tail] = value
    return out


def _shipped(name: str) -> dict[str, Any]:
    text = resources.files("nodes.diffusion").joinpath("configs", f"clip_vision_{name}.json").read_text()
    return dict(json.loads(text))


def vision_config(sd: dict[str, torch.Tensor], where: str) -> tuple[str, CLIPVisionConfig]:
    """The tower's name (vit_bigg, vit_h, vit_l or reduced) and its config, sizes read from the tensors."""
    layers = len({m.group(1) for k in sd if (m := re.match(r"vision_model\.encoder\.layers\.(\d+)\.", k))})
    if layers == 0 or "visual_projection.weight" not in sd:
        raise CheckpointFormatError(f"{where}: no CLIP vision tower (vision_model.* with a projection)")
    positions, width = sd[HF_PREFIX + "embeddings.position_embedding.weight"].shape
    patch = sd[HF_PREFIX + "embeddings.patch_embedding.weight"].shape[-1]
    name = {48: "vit_bigg", 32: "vit_h", 24: "vit_l"}.get(layers, "reduced")
    if name == "vit_l" and positions != 257:
        raise CheckpointFormatError(
            f"{where}: a ViT-L/14 tower for {positions - 1} patches (336 px or SigLIP); only 224 px towers "
            "are supported"
        )
    cfg = _shipped("vit_h" if name == "reduced" else name)
    side = round((positions - 1) ** 0.5)
    cfg.update(
        hidden_size=width,
        num_hidden_layers=layers,
        intermediate_size=sd[HF_PREFIX + "encoder.layers.0.mlp.fc1.weight"].shape[0],
        projection_dim=sd["visual_projection.weight"].shape[0],
        patch_size=patch,
        image_size=side * patch,
    )
    if name == "reduced":
        cfg["num_attention_heads"] = max(1, width // 64)
    cfg.pop("model_type", None)
    return name, CLIPVisionConfig(**cfg)


def is_siglip(sd: dict[str, torch.Tensor]) -> bool:
    """Whether transformers-layout tensors are a SigLIP tower (no class token, a patch-embedding bias)."""
    return (
        HF_PREFIX + "embeddings.patch_embedding.bias" in sd
        and HF_PREFIX + "embeddings.class_embedding" not in sd
    )


def siglip_config(sd: dict[str, torch.Tensor]) -> SiglipVisionConfig:
    """A SigLIP tower's config with every size read from the tensors (ComfyUI's norm eps)."""
    layers = len({m.group(1) for k in sd if (m := re.match(r"vision_model\.encoder\.layers\.(\d+)\.", k))})
    positions, width = sd[HF_PREFIX + "embeddings.position_embedding.weight"].shape
    patch = sd[HF_PREFIX + "embeddings.patch_embedding.weight"].shape[-1]
    head_dim = SIGLIP_HEAD_DIM if width % SIGLIP_HEAD_DIM == 0 else 8
    return SiglipVisionConfig(
        hidden_size=width,
        intermediate_size=sd[HF_PREFIX + "encoder.layers.0.mlp.fc1.weight"].shape[0],
        num_hidden_layers=layers,
        num_attention_heads=max(1, width // head_dim),
        image_size=SIGLIP_IMAGE_SIZES.get((positions, patch), round(positions**0.5) * patch),
        patch_size=patch,
        hidden_act="gelu_pytorch_tanh",
        layer_norm_eps=SIGLIP_NORM_EPS,
        vision_use_head=False,
    )


def build_siglip_tower(sd: dict[str, torch.Tensor], dtype: torch.dtype, where: str) -> SiglipVisionModel:
    """transformers' SiglipVisionModel from tensors in its layout (the pooling head dropped)."""
    sd = {k: v for k, v in sd.items() if k.startswith(HF_PREFIX) and not k.startswith(HF_PREFIX + "head.")}
    sd.pop(HF_PREFIX + "embeddings.position_ids", None)
    cfg = siglip_config(sd)
    # transformers 5's SiglipVisionModel holds the tower's modules without the file's `vision_model.`.
    sd = {k.removeprefix(HF_PREFIX): v for k, v in sd.items()}
    with torch.device("meta"):
        model = SiglipVisionModel(cfg)
    module, _ = to_model(model, sd, dtype, f"{where} clip vision (siglip)")
    assert isinstance(module, SiglipVisionModel)
    return module


def build_vision_tower(sd: dict[str, torch.Tensor], dtype: torch.dtype, where: str) -> VisionTower:
    """The transformers tower from tensors in any supported layout (OpenCLIP keys are converted first)."""
    if is_siglip(sd):
        return build_siglip_tower(sd, dtype, where)
    prefix = find_openclip_prefix(list(sd))
    if prefix is not None:
        sd = openclip_to_hf(sd, prefix)
    else:
        sd = {k: v for k, v in sd.items() if k.startswith(HF_PREFIX) or k == "visual_projection.weight"}
    sd.pop(HF_PREFIX + "embeddings.position_ids", None)
    name, cfg = vision_config(sd, where)
    with torch.device("meta"):
        model = CLIPVisionModelWithProjection(cfg)
    module, _ = to_model(model, sd, dtype, f"{where} clip vision ({name})")
    assert isinstance(module, CLIPVisionModelWithProjection)
    return module


def preprocess(
    pixels: torch.Tensor,
    size: int,
    crop: bool,
    mean: tuple[float, ...] = CLIP_MEAN,
    std: tuple[float, ...] = CLIP_STD,
) -> torch.Tensor:
    """[B, H, W, C] 0..1 pixels -> normalised [B, 3, size, size] as ComfyUI feeds CLIP vision.

    With `crop` the shortest side is scaled to `size` (bicubic, antialiased) and the centre cut out;
    without it the image is squashed to size x size. Values are rounded to 8-bit levels before the
    mean/std normalisation (CLIP's, or SigLIP's 0.5).
    """
    chw = pixels[..., :3].movedim(-1, 1)
    if chw.shape[2] != size or chw.shape[3] != size:
        if crop:
            factor = size / min(chw.shape[2], chw.shape[3])
            target = (round(factor * chw.shape[2]), round(factor * chw.shape[3]))
        else:
            target = (size, size)
        chw = torch.nn.functional.interpolate(chw, size=target, mode="bicubic", antialias=True)
        top, left = (chw.shape[2] - size) // 2, (chw.shape[3] - size) // 2
        chw = chw[:, :, top : top + size, left : left + size]
    chw = torch.clamp(chw * 255.0, 0, 255).round() / 255.0
    mean_t = torch.tensor(mean, dtype=chw.dtype).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=chw.dtype).view(1, 3, 1, 1)
    return (chw - mean_t) / std_t


def encode_images(
    tower: VisionTower, pixels: torch.Tensor, crop: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(last_hidden_state, penultimate hidden state, image_embeds, all layer outputs or None) for
    [B, H, W, C] pixels, float32 CPU. SigLIP: image_embeds is the normed last state, all layers given."""
    param = next(iter(tower.parameters()))
    size = tower.config.image_size
    assert isinstance(size, int)
    siglip = isinstance(tower, SiglipVisionModel)
    norm = (SIGLIP_MEAN, SIGLIP_STD) if siglip else (CLIP_MEAN, CLIP_STD)
    values = preprocess(pixels.float(), size, crop, *norm).to(param.device, param.dtype)
    with torch.inference_mode():
        out = tower(pixel_values=values, output_hidden_states=True)
    assert out.hidden_states is not None and out.last_hidden_state is not None
    last = out.last_hidden_state.float().cpu()
    penultimate = out.hidden_states[-2].float().cpu()
    if siglip:
        # hidden_states[0] is the embedding output; ComfyUI's list holds the layer outputs only.
        layers = torch.stack([h.float().cpu() for h in out.hidden_states[1:]], dim=1)
        return last, penultimate, last, layers
    return last, penultimate, out.image_embeds.float().cpu(), None
