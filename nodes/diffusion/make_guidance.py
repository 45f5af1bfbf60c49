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

from nodes.diffusion.random_weights import write_random_file

Shapes = dict[str, tuple[Sequence[int], torch.dtype]]


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
