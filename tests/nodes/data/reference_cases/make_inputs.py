"""Writes the inputs of these reference cases: a 128x128 RGBA picture and two random SD1.x embeddings.

    python make_inputs.py OUT_DIR     # OUT_DIR/input/scene_rgba_128.png, OUT_DIR/embeddings/*.safetensors

Everything is integer arithmetic or a seeded CPU torch draw, so reruns give identical files.
The picture's alpha is 255 outside an ellipse and 0 inside it, so LoadImage's MASK (1 - alpha) marks the
ellipse; a second, softer ramp (alpha 128) marks a band at the bottom.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file

SIZE = 128


def scene_rgba() -> Image.Image:
    """Gradients plus a disc, with an elliptical hole and a half-transparent band in the alpha."""
    y, x = np.mgrid[0:SIZE, 0:SIZE]
    r = (x * 2) % 256
    g = (y * 2) % 256
    b = np.where((x - 40) ** 2 + (y - 50) ** 2 < 20**2, 230, 60)
    inside = ((x - 72) * 3) ** 2 + ((y - 56) * 4) ** 2 < (3 * 4 * 24) ** 2
    alpha = np.where(inside, 0, 255)
    alpha = np.where(y >= 112, 128, alpha)
    rgba = np.stack([r, g, b, alpha], axis=-1).astype(np.uint8)
    return Image.fromarray(rgba, mode="RGBA")


def embeddings() -> dict[str, dict[str, torch.Tensor]]:
    """Two SD1.x (768-wide) textual-inversion files: A1111-style `emb_params` and a `clip_l` key."""
    gen = torch.Generator().manual_seed(777)
    style = torch.randn(3, 768, generator=gen) * 0.03
    obj = torch.randn(2, 768, generator=gen) * 0.03
    return {"rand_style.safetensors": {"emb_params": style}, "rand_obj.safetensors": {"clip_l": obj}}


def main(out: Path) -> None:
    """Write every input under `out`."""
    (out / "input").mkdir(parents=True, exist_ok=True)
    scene_rgba().save(out / "input" / "scene_rgba_128.png")
    (out / "embeddings").mkdir(parents=True, exist_ok=True)
    for name, tensors in embeddings().items():
        save_file(tensors, str(out / "embeddings" / name))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
