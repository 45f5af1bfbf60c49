"""Random-weight files for guidance and enhancement models, in the layouts they are published in.

ESRGAN upscalers come in two layouts: the original one (`model.0`, `model.1.sub.N.RDBk.convj.0`, as in
4x-UltraSharp and most community models) and the BasicSR/Real-ESRGAN one (`conv_first`, `body.N.rdbk`,
`conv_up1`...). Full size is 64 features, 23 blocks, growth 32; tiny keeps the structure with 8 features
and 1 block (growth stays 32: loaders assume it).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors.torch import save_file

from nodes.diffusion.random_weights import random_tensor, tensor_seed, write_random_file

Shapes = dict[str, tuple[Sequence[int], torch.dtype]]
# CLIP vision towers: (width, layers, mlp, projection) of the published ViT-L/14, ViT-H/14, ViT-bigG/14.
CLIP_VISION_SIZES = {
    "vit_l": (1024, 24, 4096, 768),
    "vit_h": (1280, 32, 5120, 1024),
    "vit_bigg": (1664, 48, 8192, 1280),
    "tiny": (64, 3, 128, 32),
}


def esrgan_layout(
    style: str, *, features: int, blocks: int, growth: int, scale: int, dtype: torch.dtype
) -> Shapes:
    """Tensor names and shapes of an RRDB (ESRGAN) upscaler with 3-channel input and output."""
    if scale not in (1, 2, 4, 8):
        raise ValueError(f"ESRGAN scale must be 1, 2, 4 or 8, not {scale}")
    if style not in ("old", "new"):
        raise ValueError(f"ESRGAN layout style is 'old' or 'new', not {style!r}")
    conv = (3, 3)
    shapes: dict[str, tuple[int, ...]] = {}
    ups = {1: 0, 2: 1, 4: 2, 8: 3}[scale]

    def add(name: str, out_ch: int, in_ch: int) -> None:
        shapes[f"{name}.weight"] = (out_ch, in_ch, *conv)
        shapes[f"{name}.bias"] = (out_ch,)

    old = style == "old"
    add("model.0" if old else "conv_first", features, 3)
    for n in range(blocks):
        for k in range(1, 4):
            for j in range(1, 6):
                out_ch = features if j == 5 else growth
                name = f"model.1.sub.{n}.RDB{k}.conv{j}.0" if old else f"body.{n}.rdb{k}.conv{j}"
                add(name, out_ch, features + (j - 1) * growth)
    add(f"model.1.sub.{blocks}" if old else "conv_body", features, features)
    for u in range(1, ups + 1):
        add(f"model.{3 * u}" if old else f"conv_up{u}", features, features)
    add(f"model.{3 * ups + 2}" if old else "conv_hr", features, features)
    add(f"model.{3 * ups + 4}" if old else "conv_last", 3, features)
    return {k: (v, dtype) for k, v in shapes.items()}


def make_esrgan(path: Path, style: str, size: str, seed: int, scale: int = 4) -> Path:
    """Write a random ESRGAN file (`style` old or new, `size` tiny or full)."""
    dims = (
        {"features": 64, "blocks": 23, "growth": 32}
        if size == "full"
        else {
            "features": 8,
            "blocks": 1,
            "growth": 32,  # spandrel assumes the published growth; it is not read from the shapes
        }
    )
    dtype = torch.float32 if size == "tiny" else torch.float16
    layout = esrgan_layout(style, scale=scale, dtype=dtype, **dims)
    return write_random_file(path, seed, "esrgan", layout)


def clip_vision_layout(style: str, size: str, dtype: torch.dtype, prefix: str = "") -> Shapes:
    """A CLIP vision tower in the transformers (`hf`) or OpenCLIP (`open_clip`, keys under `visual.`) layout."""
    width, layers, mlp, proj = CLIP_VISION_SIZES[size]
    positions = 257  # 224 px images in 14 px patches, plus the class token
    shapes: dict[str, tuple[int, ...]] = {}

    def linear(name: str, out_f: int, in_f: int) -> None:
        shapes[name + ".weight"] = (out_f, in_f)
        shapes[name + ".bias"] = (out_f,)

    def norm(name: str) -> None:
        shapes[name + ".weight"] = (width,)
        shapes[name + ".bias"] = (width,)

    if style == "hf":
        v = "vision_model."
        shapes[v + "embeddings.class_embedding"] = (width,)
        shapes[v + "embeddings.patch_embedding.weight"] = (width, 3, 14, 14)
        shapes[v + "embeddings.position_embedding.weight"] = (positions, width)
        norm(v + "pre_layrnorm")
        for i in range(layers):
            p = f"{v}encoder.layers.{i}."
            for n in ("k_proj", "v_proj", "q_proj", "out_proj"):
                linear(p + "self_attn." + n, width, width)
            norm(p + "layer_norm1")
            linear(p + "mlp.fc1", mlp, width)
            linear(p + "mlp.fc2", width, mlp)
            norm(p + "layer_norm2")
        norm(v + "post_layernorm")
        shapes["visual_projection.weight"] = (proj, width)
    elif style == "open_clip":
        v = "visual."
        shapes[v + "class_embedding"] = (width,)
        shapes[v + "positional_embedding"] = (positions, width)
        shapes[v + "proj"] = (width, proj)
        shapes[v + "conv1.weight"] = (width, 3, 14, 14)
        norm(v + "ln_pre")
        for i in range(layers):
            p = f"{v}transformer.resblocks.{i}."
            norm(p + "ln_1")
            shapes[p + "attn.in_proj_weight"] = (3 * width, width)
            shapes[p + "attn.in_proj_bias"] = (3 * width,)
            linear(p + "attn.out_proj", width, width)
            norm(p + "ln_2")
            linear(p + "mlp.c_fc", mlp, width)
            linear(p + "mlp.c_proj", width, mlp)
        norm(v + "ln_post")
    else:
        raise ValueError(f"CLIP vision layout style is 'hf' or 'open_clip', not {style!r}")
    return {prefix + k: (v_, dtype) for k, v_ in shapes.items()}


def random_tensors(seed: int, component: str, layout: Shapes) -> dict[str, torch.Tensor]:
    """Every tensor of a layout: the shared value rule, and for embeddings and fused or bare matrices
    (OpenCLIP's `in_proj_weight`, `proj`, `class_embedding`...) a fan-in bounded uniform draw."""
    shapes = {k: shape for k, (shape, _) in layout.items()}
    out = {}
    for key, (shape, dtype) in layout.items():
        if key.endswith((".weight", ".bias", ".scale")) and (
            not key.endswith(".bias") or key[: -len("bias")] + "weight" in shapes
        ):
            value = random_tensor(seed, component, key, shape, shapes)
        else:
            gen = torch.Generator().manual_seed(tensor_seed(seed, component, key))
            fan_in = shape[-1] if key.endswith(("_weight", "proj", "embedding")) and len(shape) >= 2 else 1
            bound = 1.0 / fan_in**0.5 if fan_in > 1 else 0.1
            if key.endswith("proj") and len(shape) == 2:
                bound = 1.0 / shape[0] ** 0.5  # OpenCLIP's proj is [in, out]
            value = (torch.rand(tuple(shape), generator=gen) * 2 - 1) * bound
        out[key] = value.to(dtype)
    return out


def write_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> Path:
    """Save tensors the way `safetensors.torch.save_file` lays them out."""
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata={"format": "pt"})
    return path


def make_clip_vision(path: Path, style: str, size: str, seed: int) -> Path:
    """Write a random CLIP vision tower (`style` hf or open_clip; `size` tiny, vit_l, vit_h, vit_bigg)."""
    dtype = torch.float32 if size == "tiny" else torch.float16
    layout = clip_vision_layout(style, size, dtype)
    return write_tensors(path, random_tensors(seed, "clip_vision", layout))


def style_adapter_layout(size: str, dtype: torch.dtype) -> Shapes:
    """The T2I-Adapter style model: full is the published 1024 wide, 3 blocks, 8 tokens, 768 out."""
    width, layers, tokens, context = (1024, 3, 8, 768) if size == "full" else (64, 1, 4, 32)
    shapes: dict[str, tuple[int, ...]] = {
        "style_embedding": (1, tokens, width),
        "ln_pre.weight": (width,),
        "ln_pre.bias": (width,),
        "ln_post.weight": (width,),
        "ln_post.bias": (width,),
        "proj": (width, context),
    }
    for i in range(layers):
        p = f"transformer_layes.{i}."
        shapes[p + "attn.in_proj_weight"] = (3 * width, width)
        shapes[p + "attn.in_proj_bias"] = (3 * width,)
        shapes[p + "attn.out_proj.weight"] = (width, width)
        shapes[p + "attn.out_proj.bias"] = (width,)
        for norm in ("ln_1", "ln_2"):
            shapes[p + norm + ".weight"] = (width,)
            shapes[p + norm + ".bias"] = (width,)
        shapes[p + "mlp.c_fc.weight"] = (4 * width, width)
        shapes[p + "mlp.c_fc.bias"] = (4 * width,)
        shapes[p + "mlp.c_proj.weight"] = (width, 4 * width)
        shapes[p + "mlp.c_proj.bias"] = (width,)
    return {k: (v, dtype) for k, v in shapes.items()}


def make_style_model(path: Path, size: str, seed: int) -> Path:
    """Write a random T2I-Adapter style model (`size` tiny or full)."""
    dtype = torch.float32 if size == "tiny" else torch.float16
    return write_tensors(path, random_tensors(seed, "style_model", style_adapter_layout(size, dtype)))


def gligen_layout(size: str, dtype: torch.dtype) -> Shapes:
    """A GLIGEN text-box file for SD1.x (gligen_sd14_textbox_pruned layout): a gated self-attention
    `fuser` per transformer block and the `position_net`; tiny matches the tiny SD1.5 UNet."""
    channels, text_width = (320, 768) if size == "full" else (32, 64)
    # Transformer blocks of an SD1.x UNet and the width of each (channel multipliers 1, 2, 4).
    places = [("input_blocks", i, m) for i, m in ((1, 1), (2, 1), (4, 2), (5, 2), (7, 4), (8, 4))]
    places += [("middle_block", 1, 4)]
    places += [
        ("output_blocks", i, m)
        for i, m in ((3, 4), (4, 4), (5, 4), (6, 2), (7, 2), (8, 2), (9, 1), (10, 1), (11, 1))
    ]
    shapes: dict[str, tuple[int, ...]] = {}
    for part, index, mult in places:
        q = channels * mult
        # The transformer is module 1 of its block: input_blocks.1.1..., middle_block.1..., output_blocks.3.1...
        block = f"{part}.{index}" if part == "middle_block" else f"{part}.{index}.1"
        f = f"{block}.transformer_blocks.0.fuser."
        shapes.update({f + "alpha_attn": (), f + "alpha_dense": ()})
        shapes.update({f + "linear.weight": (q, text_width), f + "linear.bias": (q,)})
        for n in ("to_q", "to_k", "to_v"):
            shapes[f + f"attn.{n}.weight"] = (q, q)
        shapes.update({f + "attn.to_out.0.weight": (q, q), f + "attn.to_out.0.bias": (q,)})
        shapes.update({f + "ff.net.0.proj.weight": (8 * q, q), f + "ff.net.0.proj.bias": (8 * q,)})
        shapes.update({f + "ff.net.2.weight": (q, 4 * q), f + "ff.net.2.bias": (q,)})
        for norm in ("norm1", "norm2"):
            shapes.update({f + norm + ".weight": (q,), f + norm + ".bias": (q,)})
    fourier = 8 * 2 * 4  # 8 frequencies, sin and cos, 4 box corners
    p = "position_net."
    shapes.update({p + "null_positive_feature": (text_width,), p + "null_position_feature": (fourier,)})
    shapes.update({p + "linears.0.weight": (512, text_width + fourier), p + "linears.0.bias": (512,)})
    shapes.update({p + "linears.2.weight": (512, 512), p + "linears.2.bias": (512,)})
    shapes.update({p + "linears.4.weight": (text_width, 512), p + "linears.4.bias": (text_width,)})
    return {k: (v, dtype) for k, v in shapes.items()}


def make_gligen(path: Path, size: str, seed: int) -> Path:
    """Write a random GLIGEN text-box file (`size` tiny or full)."""
    dtype = torch.float32 if size == "tiny" else torch.float16
    return write_tensors(path, random_tensors(seed, "gligen", gligen_layout(size, dtype)))


# `diffgraph make-checkpoint --arch NAME`: the auxiliary files and how each size is read.
AUX_ARCHES = {
    "esrgan": "ESRGAN x4, original layout (model.0, model.1.sub.N.RDBk...)",
    "esrgan-basicsr": "ESRGAN x4, BasicSR / Real-ESRGAN layout (conv_first, body.N.rdbk...)",
    "clip-vision": "CLIP vision tower, transformers layout (full = ViT-H/14)",
    "clip-vision-openclip": "CLIP vision tower, OpenCLIP layout under visual. (full = ViT-H/14)",
    "t2i-style": "T2I-Adapter style model",
    "gligen": "GLIGEN text-box model for SD1.x",
}


def make_aux(arch: str, size: str, seed: int, path: Path) -> Path:
    """Write one auxiliary random file (`size` tiny or full)."""
    if size not in ("tiny", "full"):
        raise ValueError(f"{arch} comes in sizes tiny and full, not {size!r}")
    if arch in ("esrgan", "esrgan-basicsr"):
        return make_esrgan(path, "old" if arch == "esrgan" else "new", size, seed, 4)
    if arch in ("clip-vision", "clip-vision-openclip"):
        style = "hf" if arch == "clip-vision" else "open_clip"
        return make_clip_vision(path, style, "tiny" if size == "tiny" else "vit_h", seed)
    if arch == "t2i-style":
        return make_style_model(path, size, seed)
    if arch == "gligen":
        return make_gligen(path, size, seed)
    raise ValueError(f"unknown auxiliary arch {arch!r}; one of {', '.join(AUX_ARCHES)}")
