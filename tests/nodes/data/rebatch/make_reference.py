"""Regenerate reference.safetensors: ComfyUI 0.3.64's RebatchLatents / RebatchImages on fixed inputs.

Needs a ComfyUI checkout and its Python (not a test dependency):

    COMFYUI=path/to/ComfyUI path/to/comfy-venv/bin/python tests/nodes/data/rebatch/make_reference.py

Inputs come from inputs() below (seeded); outputs are stored as out{i}_samples / _mask / _index and
img{i}, with metadata giving the counts.
"""

import os
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file


def inputs():
    g = torch.Generator().manual_seed(5)
    latents = [
        {"samples": torch.randn(3, 4, 8, 8, generator=g)},
        {
            "samples": torch.randn(2, 4, 8, 8, generator=g),
            "noise_mask": torch.rand(1, 1, 64, 64, generator=g),
        },
        {"samples": torch.randn(2, 4, 6, 6, generator=g)},
        {"samples": torch.randn(1, 4, 6, 6, generator=g), "batch_index": [7]},
    ]
    images = [torch.rand(3, 5, 5, 3, generator=g), torch.rand(2, 5, 5, 3, generator=g)]
    return latents, images


def main() -> None:
    sys.path.insert(0, os.environ["COMFYUI"])
    os.chdir(os.environ["COMFYUI"])
    sys.argv = [sys.argv[0], "--cpu"]
    import comfy.options

    comfy.options.enable_args_parsing()
    from comfy_extras.nodes_rebatch import ImageRebatch, LatentRebatch

    latents, images = inputs()
    tensors = {}
    out = LatentRebatch.execute(latents, [2]).result[0]
    for i, item in enumerate(out):
        tensors[f"out{i}_samples"] = item["samples"].contiguous()
        tensors[f"out{i}_index"] = torch.tensor(item["batch_index"])
        if "noise_mask" in item:
            tensors[f"out{i}_mask"] = item["noise_mask"].contiguous()
    imgs = ImageRebatch.execute(images, [2]).result[0]
    for i, img in enumerate(imgs):
        tensors[f"img{i}"] = img.contiguous()
    meta = {"latents": str(len(out)), "images": str(len(imgs)), "comfyui": "0.3.64"}
    save_file(tensors, str(Path(__file__).resolve().parent / "reference.safetensors"), metadata=meta)


if __name__ == "__main__":
    main()
