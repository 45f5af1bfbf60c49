"""Random-weight files for FLUX USO: the style projector (a model patch) and SigLIP vision towers.

Sizes: "full" is as published (projector 729 SigLIP tokens -> 64 style tokens per branch, 1152 wide,
into FLUX's 3072; SigLIP so400m/14 at 384 px, 27 layers); "reduced" has the same shapes in float32
(the projector) for the reduced-depth FLUX files: ComfyUI builds both networks at the published sizes
whatever the file holds, so a shallower SigLIP would leave layers unset there. "tiny" is a 20-layer,
16-wide SigLIP over 42 px images (9 tokens) and a projector into the tiny FLUX's 256 channels. USO
reads the 20th layer from the end, so no tower may have fewer layers.
"""

from __future__ import annotations

from pathlib import Path

import torch

from nodes.diffusion.make_guidance import Shapes, random_tensors, write_tensors
from nodes.diffusion.uso import USO_PREFIX

# (tokens, style tokens, SigLIP width, FLUX width) of the projector.
USO_SIZES = {"tiny": (9, 4, 16, 256), "reduced": (729, 64, 1152, 3072), "full": (729, 64, 1152, 3072)}
# (width, layers, mlp, image size) of the SigLIP tower; patches are 14 px.
SIGLIP_SIZES = {"tiny": (16, 20, 32, 42), "reduced": (1152, 27, 4304, 384), "full": (1152, 27, 4304, 384)}
SIGLIP_PATCH = 14
USO_ARCHS = {
    "uso-projector": "USO style projector model patch (models/model_patches)",
    "siglip-vision": "SigLIP vision tower, transformers layout (full = so400m/14 at 384 px)",
}


def uso_projector_layout(size: str, dtype: torch.dtype) -> Shapes:
    """The USO projector's tensors (feature_embedder.{high,mid,low}_*), as in uso-flux1-projector-v1."""
    tokens, style, width, hidden = USO_SIZES[size]
    shapes: dict[str, tuple[int, ...]] = {}
    for branch in ("high", "mid", "low"):
        p = f"{USO_PREFIX}{branch}_"
        shapes.update(
            {p + "embedding_linear.0.weight": (style, tokens), p + "embedding_linear.0.bias": (style,)}
        )
        shapes.update({p + "layer_norm.weight": (width,), p + "layer_norm.bias": (width,)})
        shapes.update({p + "projection.weight": (hidden, width), p + "projection.bias": (hidden,)})
    return {k: (v, dtype) for k, v in shapes.items()}


def siglip_layout(size: str, dtype: torch.dtype) -> Shapes:
    """A SigLIP vision tower in the transformers layout (vision_model.*, with the pooling head)."""
    width, layers, mlp, image = SIGLIP_SIZES[size]
    positions = (image // SIGLIP_PATCH) ** 2
    v = "vision_model."
    shapes: dict[str, tuple[int, ...]] = {
        v + "embeddings.patch_embedding.weight": (width, 3, SIGLIP_PATCH, SIGLIP_PATCH),
        v + "embeddings.patch_embedding.bias": (width,),
        v + "embeddings.position_embedding.weight": (positions, width),
    }

    def linear(name: str, out_f: int, in_f: int) -> None:
        shapes.update({name + ".weight": (out_f, in_f), name + ".bias": (out_f,)})

    def norm(name: str) -> None:
        shapes.update({name + ".weight": (width,), name + ".bias": (width,)})

    for i in range(layers):
        p = f"{v}encoder.layers.{i}."
        for n in ("q_proj", "k_proj", "v_proj", "out_proj"):
            linear(p + "self_attn." + n, width, width)
        norm(p + "layer_norm1")
        linear(p + "mlp.fc1", mlp, width)
        linear(p + "mlp.fc2", width, mlp)
        norm(p + "layer_norm2")
    norm(v + "post_layernorm")
    # The attention-pooling head the published file carries (unused by ComfyUI and here).
    shapes[v + "head.probe"] = (1, 1, width)
    shapes.update({v + "head.attention.in_proj_weight": (3 * width, width)})
    shapes.update({v + "head.attention.in_proj_bias": (3 * width,)})
    linear(v + "head.attention.out_proj", width, width)
    norm(v + "head.layernorm")
    linear(v + "head.mlp.fc1", mlp, width)
    linear(v + "head.mlp.fc2", width, mlp)
    return {k: (s, dtype) for k, s in shapes.items()}


def make_uso_file(arch: str, size: str, seed: int, path: Path) -> Path:
    """Write a random `uso-projector` (float32; full size bf16) or `siglip-vision` (fp16) file."""
    if size not in USO_SIZES:
        raise ValueError(f"{arch} comes in sizes {', '.join(USO_SIZES)}, not {size!r}")
    if arch == "uso-projector":
        dtype = torch.bfloat16 if size == "full" else torch.float32
        return write_tensors(path, random_tensors(seed, "uso_projector", uso_projector_layout(size, dtype)))
    if arch == "siglip-vision":
        # fp16 at every size: ComfyUI keeps image encoders in fp16 on CPU, so this file loses nothing there.
        return write_tensors(path, random_tensors(seed, "siglip_vision", siglip_layout(size, torch.float16)))
    raise ValueError(f"unknown USO arch {arch!r}")
