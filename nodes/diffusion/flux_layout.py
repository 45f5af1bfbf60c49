"""Tensor layouts of published FLUX.1 files (BFL diffusion model, FLUX autoencoder) for random test files.

Sizes: "reduced" is the full width (hidden 3072, 24 heads, T5 4096, CLIP-L 768) at 2 double + 2 single
blocks, as in the shared reference's d2s2 files; "full" the published 19 + 38 blocks; "tiny" a 256-wide,
1 + 1 block model over the tiny text encoders (T5 width 128, CLIP-L 64) for fast tests. The autoencoder is
full size ("full"/"reduced") or 32 channels wide ("tiny").
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from nodes.diffusion.ldm_layout import VaeArch, vae_layout
from nodes.diffusion.random_weights import write_random_file

Layout = dict[str, tuple[int, ...]]
FLUX_ARCHS = ("flux1-dev", "flux1-schnell", "flux1-fill-dev", "flux1-canny-dev", "flux1-depth-dev", "flux-ae")
FLUX_SIZES = ("tiny", "reduced", "full")
HEAD_DIM = 128
MLP_RATIO = 4
# (hidden, double blocks, single blocks, context dim, pooled dim) per size.
_SIZES = {
    "tiny": (256, 1, 1, 128, 64),
    "reduced": (3072, 2, 2, 4096, 768),
    "full": (3072, 19, 38, 4096, 768),
}
# The random-weight rule's component name: both FLUX files share one (schnell = dev without guidance_in).
# Fill (dev with a 384-wide img_in) and Canny/Depth (128-wide) share it too: only img_in's values differ.
COMPONENTS = {
    "flux1-dev": "flux",
    "flux1-schnell": "flux",
    "flux1-fill-dev": "flux",
    "flux1-canny-dev": "flux",
    "flux1-depth-dev": "flux",
    "flux-ae": "flux-ae",
}
LATENT_CHANNELS = 16
# Input channels per latent pixel: Fill's latent, masked-image latent and 8x8 mask pixels; Canny's and
# Depth's latent and control-image latent (the two files have one layout).
INPUT_CHANNELS = {
    "flux1-fill-dev": 2 * LATENT_CHANNELS + 64,
    "flux1-canny-dev": 2 * LATENT_CHANNELS,
    "flux1-depth-dev": 2 * LATENT_CHANNELS,
}


def _linear(out: Layout, name: str, rows: int, cols: int) -> None:
    out[name + ".weight"] = (rows, cols)
    out[name + ".bias"] = (rows,)


def _qk_norm(out: Layout, stem: str) -> None:
    out[stem + ".query_norm.scale"] = (HEAD_DIM,)
    out[stem + ".key_norm.scale"] = (HEAD_DIM,)


def flux_layout(arch: str, size: str) -> Layout:
    """Keys and shapes of a BFL-layout FLUX.1 dev, schnell, Fill, Canny or Depth dev diffusion model."""
    hidden, double, single, context, pooled = _SIZES[size]
    out_features = LATENT_CHANNELS * 4
    in_features = INPUT_CHANNELS.get(arch, LATENT_CHANNELS) * 4
    guidance = arch != "flux1-schnell"
    return bfl_layout(hidden, double, single, context, pooled, in_features, out_features, guidance)


def bfl_layout(
    hidden: int,
    double: int,
    single: int,
    context: int,
    pooled: int,
    in_features: int,
    out_features: int,
    guidance: bool,
) -> Layout:
    """Keys and shapes of a BFL-layout FLUX.1 model of any size (`guidance`: dev's guidance embedder)."""
    mlp = hidden * MLP_RATIO
    out: Layout = {}
    _linear(out, "img_in", hidden, in_features)
    _linear(out, "txt_in", hidden, context)
    embedders = [("time_in", 256), ("vector_in", pooled)]
    if guidance:
        embedders.append(("guidance_in", 256))
    for name, width in embedders:
        _linear(out, f"{name}.in_layer", hidden, width)
        _linear(out, f"{name}.out_layer", hidden, hidden)
    for i in range(double):
        for side in ("img", "txt"):
            stem = f"double_blocks.{i}.{side}"
            _linear(out, f"{stem}_mod.lin", 6 * hidden, hidden)
            _linear(out, f"{stem}_attn.qkv", 3 * hidden, hidden)
            _qk_norm(out, f"{stem}_attn.norm")
            _linear(out, f"{stem}_attn.proj", hidden, hidden)
            _linear(out, f"{stem}_mlp.0", mlp, hidden)
            _linear(out, f"{stem}_mlp.2", hidden, mlp)
    for i in range(single):
        stem = f"single_blocks.{i}"
        _linear(out, f"{stem}.linear1", 3 * hidden + mlp, hidden)
        _linear(out, f"{stem}.linear2", hidden, hidden + mlp)
        _qk_norm(out, f"{stem}.norm")
        _linear(out, f"{stem}.modulation.lin", 3 * hidden, hidden)
    _linear(out, "final_layer.linear", out_features, hidden)
    _linear(out, "final_layer.adaLN_modulation.1", 2 * hidden, hidden)
    return out


def flux_ae_layout(size: str) -> Layout:
    """Keys and shapes of the FLUX autoencoder (LDM naming, 16 latent channels, no quant convs)."""
    channels = 32 if size == "tiny" else 128
    arch = VaeArch(channels=channels, mult=(1, 2, 4, 4), res_blocks=2, z_channels=LATENT_CHANNELS)
    layout = vae_layout(arch, prefix="")
    return {k: tuple(v) for k, v in layout.items() if "quant_conv" not in k}


def make_flux_file(arch: str, size: str, seed: int, out_path: str | Path, dtype: str | None = None) -> Path:
    """Write a random-weight FLUX file by the per-tensor value rule (BF16 model, F32 autoencoder).

    With seed 1234, size "reduced" gives the shared reference's d2s2 files (and the autoencoder) byte for byte.
    Tensors are written one at a time, so the full size (12 GB in fp8, 24 GB in bf16) needs little memory.
    """
    if arch not in FLUX_ARCHS or size not in FLUX_SIZES:
        raise ValueError(
            f"unknown FLUX arch/size {arch!r}/{size!r}; arch one of {FLUX_ARCHS}, size {FLUX_SIZES}"
        )
    shapes = flux_ae_layout(size) if arch == "flux-ae" else flux_layout(arch, size)
    default = torch.float32 if arch == "flux-ae" else torch.bfloat16
    dtypes = {None: default, "fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
    # The published fp8 diffusion models (e.g. flux1-dev-fp8-e4m3fn, 11.9 GB) store every tensor as fp8.
    dtypes |= {"fp8_e4m3fn": torch.float8_e4m3fn, "fp8_e5m2": torch.float8_e5m2}
    if dtype not in dtypes:
        raise ValueError(f"FLUX files are written as {', '.join(k for k in dtypes if k)}, not {dtype!r}")
    torch_dtype = dtypes[dtype]
    layout = {k: (list(shape), torch_dtype) for k, shape in shapes.items()}
    out = Path(out_path)
    tmp = out.with_name(out.name + ".tmp")
    write_random_file(tmp, seed, COMPONENTS[arch], layout)
    os.replace(tmp, out)
    return out
