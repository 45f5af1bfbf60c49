"""Writes style_reference.safetensors: ComfyUI 0.3.64's T2I-Adapter style tokens for a fixed input.

How it was made (CPU, ComfyUI's own venv):

    python -c "from pathlib import Path; from nodes.diffusion.make_guidance import make_style_model; \\
        make_style_model(Path('MODELS/style_models/style-full.safetensors'), 'full', 5)"
    PYTHONPATH=<ComfyUI> <comfy venv>/bin/python make_reference.py MODELS/style_models/style-full.safetensors .

It loads the file with comfy.sd.load_style_model (the published 1024-wide, 3-block, 8-token adapter)
and runs get_cond on seeded random ViT-L/14 hidden states [2, 257, 1024] (torch.randn, generator seed 3);
it stores the style tokens [2, 8, 768].
"""

import sys

import comfy.cli_args
import torch
from safetensors.torch import save_file

comfy.cli_args.args.cpu = True  # before comfy.model_management is imported: no CUDA probing

import comfy.sd  # noqa: E402


class _Out:
    def __init__(self, hidden):
        self.last_hidden_state = hidden


def main(path: str, out_dir: str) -> None:
    model = comfy.sd.load_style_model(path)
    hidden = torch.randn(2, 257, 1024, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        tokens = model.get_cond(_Out(hidden))
    save_file({"tokens": tokens.float().contiguous()}, f"{out_dir}/style_reference.safetensors")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
