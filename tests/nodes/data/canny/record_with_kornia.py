"""Records the Canny preprocessor's reference edges (run by hand with kornia installed; tests never run it).

    python record_with_kornia.py

Writes `canny_reference.safetensors` beside this file: `image` float32 [2, 48, 64, 3] (a disc, a ramp and
seeded noise; integer-free formula below) and, per threshold pair, `edges_<low>_<high>` float32
[2, 1, 48, 64] from `kornia.filters.canny(image.movedim(-1, 1), low, high)[1]`, which is what ComfyUI's
Canny node computes (kornia 0.9.0, torch 2.13, CPU).
"""

from pathlib import Path

import torch
from kornia.filters import canny
from safetensors.torch import save_file

PAIRS = ((0.4, 0.8), (0.1, 0.3), (0.6, 0.7))


def scene() -> torch.Tensor:
    """Two 48x64 RGB pictures in 0..1."""
    y, x = torch.meshgrid(torch.arange(48.0), torch.arange(64.0), indexing="ij")
    disc = ((y - 20) ** 2 + (x - 30) ** 2 < 150).float()
    ramp = x / 63
    g = torch.Generator().manual_seed(1234)
    noise = torch.rand((2, 48, 64, 3), generator=g)
    first = torch.stack([disc, ramp, 1 - disc * ramp], dim=-1)
    second = torch.stack([ramp, disc * 0.5, (y > 30).float()], dim=-1)
    return (torch.stack([first, second]) * 0.85 + noise * 0.15).clamp(0, 1)


if __name__ == "__main__":
    image = scene()
    out = {"image": image}
    for low, high in PAIRS:
        out[f"edges_{low}_{high}"] = canny(image.movedim(-1, 1), low, high)[1].contiguous()
    save_file(out, str(Path(__file__).resolve().parent / "canny_reference.safetensors"))
    print({k: float(v.sum()) for k, v in out.items()})
