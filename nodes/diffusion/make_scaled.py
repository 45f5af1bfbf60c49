"""Rewrite a random-weight file in ComfyUI's "scaled fp8" layout, for tests of the scaled-fp8 loaders.

Every Linear weight (a 2-D `.weight` that is not an embedding table) is stored as float8_e4m3fn of
weight / scale with scale = max|weight| / 448 (e4m3fn's largest finite value) beside it as a float32
`.scale_weight`, plus a `.scale_input` of 1; a `scaled_fp8` marker (an empty e4m3fn tensor) goes under
the model's key prefix. Other tensors keep their dtype.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from nodes.diffusion.stored_weights import SCALE_INPUT, SCALE_WEIGHT, SCALED_MARKER

FP8_MAX = 448.0
# 2-D weights that are lookup tables, not Linear layers (ComfyUI's scaled ops replace Linear only).
EMBEDDING_SUFFIXES = ("shared.weight", "relative_attention_bias.weight", "embed_tokens.weight")


def to_scaled_fp8(sd: dict[str, torch.Tensor], prefix: str = "") -> dict[str, torch.Tensor]:
    """The tensors with every Linear weight under `prefix` scaled to fp8 and the marker added."""
    out: dict[str, torch.Tensor] = {}
    for key, tensor in sd.items():
        linear = (
            key.startswith(prefix)
            and key.endswith(".weight")
            and tensor.ndim == 2
            and not key.endswith(EMBEDDING_SUFFIXES)
        )
        if not linear:
            out[key] = tensor
            continue
        wide = tensor.float()
        scale = wide.abs().max().clamp(min=1e-12) / FP8_MAX
        stem = key[: -len(".weight")]
        out[key] = (wide / scale).to(torch.float8_e4m3fn)
        out[stem + SCALE_WEIGHT] = scale.reshape(())
        out[stem + SCALE_INPUT] = torch.ones(())
    out[prefix + SCALED_MARKER] = torch.empty(0, dtype=torch.float8_e4m3fn)
    return out


def rewrite_scaled_fp8(path: str | Path, prefix: str = "") -> Path:
    """Rewrite a safetensors file in place in the scaled-fp8 layout; returns its path."""
    path = Path(path)
    save_file(to_scaled_fp8(load_file(str(path)), prefix), str(path), metadata={"format": "pt"})
    return path
