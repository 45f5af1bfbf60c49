"""Writes gligen_reference.safetensors: ComfyUI 0.3.64's GLIGEN gated layers on fixed inputs.

How it was made (CPU, ComfyUI's own venv):

    python -m diffgraph make-checkpoint --arch gligen --size full --seed 9 gligen-full.safetensors
    PYTHONPATH=<ComfyUI> <comfy venv>/bin/python make_reference.py gligen-full.safetensors .

It loads the file with comfy.sd.load_gligen (fp32 on CPU), places two text boxes (seeded random pooled
phrase embeddings [1, 768], torch generator seed 1 and 2) with comfy's set_position on a latent of
1x4x16x24 cells, and runs the returned middle patch on seeded random hidden states for the
transformer blocks 0, 6 and 15 (320, 1280 and 320 wide; torch generator seed 10 + index). It keeps
each output's first 16 token rows plus its sum and norm.
"""

import sys

import comfy.cli_args
import torch
from safetensors.torch import save_file

comfy.cli_args.args.cpu = True  # before comfy.model_management is imported: no CUDA probing

import comfy.sd  # noqa: E402

BLOCKS = {0: 320, 6: 1280, 15: 320}
LATENT = (1, 4, 16, 24)
# (pooled seed, height, width, y, x) in latent cells, as GLIGENTextBoxApply stores them (pixels // 8).
BOXES = ((1, 8, 12, 2, 4), (2, 4, 6, 10, 16))


def main(path: str, out_dir: str) -> None:
    gligen = comfy.sd.load_gligen(path).model.float()
    params = [
        (torch.randn(1, 768, generator=torch.Generator().manual_seed(s)), h, w, y, x)
        for s, h, w, y, x in BOXES
    ]
    patch = gligen.set_position(LATENT, params, "cpu")
    out = {}
    for index, width in BLOCKS.items():
        x = torch.randn(1, LATENT[2] * LATENT[3], width, generator=torch.Generator().manual_seed(10 + index))
        with torch.no_grad():
            result = patch(x, {"transformer_index": index})
        # The first 16 token rows, and the whole output's sum and norm, keep the file small.
        out[f"block_{index}"] = result[:, :16].contiguous()
        out[f"block_{index}_stats"] = torch.stack([result.sum(), result.norm()])
    save_file(out, f"{out_dir}/gligen_reference.safetensors")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
