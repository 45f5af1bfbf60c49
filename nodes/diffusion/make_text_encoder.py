"""Random-weight standalone text encoder files (CLIP-L, CLIP-G, T5-XXL) in their published layouts.

Full-size layouts are those of the files FLUX and SD3.5 workflows load: CLIP-L and CLIP-G in
transformers' naming (CLIP-G with `text_projection.weight`), T5-XXL as `shared.weight` plus 24
`encoder.block.N` blocks. Values follow random_weights (seed, component = the kind, key), so the
full-size files written with seed 1234 (F16 CLIPs, fp8 T5) are byte for byte the published reference
files. Tiny files keep every key pattern with small widths: CLIP-L 3 layers without projection,
CLIP-G 3 layers with one (how detection tells shallow files apart), T5 2 blocks of width 128 (CLIP-L + CLIP-G wide, as SD3 needs) with the
full 32,128-token vocabulary so the real tokenizer's ids fit.
"""

from __future__ import annotations

from pathlib import Path

import torch

from nodes.diffusion.ldm_layout import TextArch, text_layout
from nodes.diffusion.random_weights import random_tensor, write_random_file

TEXT_ENCODER_ARCHS = ("clip_l", "clip_g", "clip_g-openclip", "t5xxl")
FILE_DTYPES = {
    "fp16": torch.float16,
    "bf16": torch.bfloat16,
    "fp32": torch.float32,
    "fp8_e4m3fn": torch.float8_e4m3fn,
    "fp8_e5m2": torch.float8_e5m2,
}
_CLIP_SIZES = {"clip_l": (768, 12, 3072), "clip_g": (1280, 32, 5120)}
# Names in the OpenCLIP layout without a `.weight`/`.bias` suffix, drawn by the rule of the named one.
_OPEN_CLIP_RULE_NAMES = {
    "in_proj_weight": "in_proj.weight",
    "in_proj_bias": "in_proj.bias",
    "positional_embedding": "positional_embedding.weight",
    "text_projection": "text_projection.weight",
}


def clip_shapes(kind: str, size: str, layout: str = "hf") -> dict[str, tuple[int, ...]]:
    """Key -> shape of a CLIP-L or CLIP-G text encoder file."""
    width, layers, mlp = (64, 3, 128) if size == "tiny" else _CLIP_SIZES[kind]
    projection = width if kind == "clip_g" else 0
    shapes = text_layout(TextArch("", layout, width, layers, mlp, projection=projection))
    shapes = {k: v for k, v in shapes.items() if not k.endswith(("position_ids", "logit_scale"))}
    if layout == "hf" and projection:
        shapes["text_projection.weight"] = (projection, width)
    return shapes


def t5_shapes(size: str, blocks: int | None = None) -> dict[str, tuple[int, ...]]:
    """Key -> shape of a T5-XXL encoder file (`blocks` overrides the depth: reduced full-width files)."""
    d, inner, ff, heads, depth = (128, 128, 256, 4, 2) if size == "tiny" else (4096, 4096, 10240, 64, 24)
    blocks = depth if blocks is None else blocks
    out: dict[str, tuple[int, ...]] = {"shared.weight": (32128, d)}
    for i in range(blocks):
        p = f"encoder.block.{i}.layer."
        for n in ("q", "k", "v"):
            out[f"{p}0.SelfAttention.{n}.weight"] = (inner, d)
        out[f"{p}0.SelfAttention.o.weight"] = (d, inner)
        if i == 0:
            out[f"{p}0.SelfAttention.relative_attention_bias.weight"] = (32, heads)
        out[f"{p}0.layer_norm.weight"] = (d,)
        out[f"{p}1.DenseReluDense.wi_0.weight"] = (ff, d)
        out[f"{p}1.DenseReluDense.wi_1.weight"] = (ff, d)
        out[f"{p}1.DenseReluDense.wo.weight"] = (d, ff)
        out[f"{p}1.layer_norm.weight"] = (d,)
    out["encoder.final_layer_norm.weight"] = (d,)
    return out


def text_encoder_shapes(arch: str, size: str, blocks: int | None = None) -> dict[str, tuple[int, ...]]:
    """Key -> shape for one of TEXT_ENCODER_ARCHS at tiny or full size (`blocks`: T5 depth)."""
    if arch == "t5xxl":
        return t5_shapes(size, blocks)
    if arch == "clip_g-openclip":
        return clip_shapes("clip_g", size, "open_clip")
    return clip_shapes(arch, size)


def make_text_encoder(
    arch: str, size: str, seed: int, out: str | Path, dtype: str = "fp16", blocks: int | None = None
) -> Path:
    """Write a random-weight text encoder file; returns its path.

    `blocks` cuts T5 to its first blocks: the tensors are those of the full file (one generator per
    key), so a 2-block full-width T5 is a strict subset of the published one.
    """
    if arch not in TEXT_ENCODER_ARCHS or size not in ("tiny", "full"):
        raise ValueError(f"unknown text encoder {arch!r}/{size!r}; one of {TEXT_ENCODER_ARCHS}, tiny|full")
    shapes = text_encoder_shapes(arch, size, blocks)
    component = "clip_g" if arch == "clip_g-openclip" else arch
    torch_dtype = FILE_DTYPES[dtype]
    if arch != "clip_g-openclip":
        layout = {k: (list(s), torch_dtype) for k, s in shapes.items()}
        return write_random_file(Path(out), seed, component, layout)
    # OpenCLIP names a few tensors without the suffix the value rule reads: draw them by an alias.
    rule_shapes = {_rule_name(k): s for k, s in shapes.items()}
    tensors = {
        k: random_tensor(seed, component, _rule_name(k), s, rule_shapes).to(torch_dtype)
        for k, s in shapes.items()
    }
    from safetensors.torch import save_file

    Path(out).parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out), metadata={"format": "pt"})
    return Path(out)


def _rule_name(key: str) -> str:
    for name, alias in _OPEN_CLIP_RULE_NAMES.items():
        if key.endswith(name):
            return key[: -len(name)] + alias
    return key
