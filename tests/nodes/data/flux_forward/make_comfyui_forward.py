"""Regenerate comfyui_flux_dev_d2s2_forward.safetensors: one ComfyUI 0.3.64 FLUX dev forward on CPU.

Needs a ComfyUI checkout, its Python and the reference FLUX dev d2s2 file (make-checkpoint --arch flux1-dev
--size reduced --seed 1234):

    COMFYUI=path/to/ComfyUI path/to/comfy-venv/bin/python make_comfyui_forward.py path/to/flux1-dev-d2s2.safetensors

The model loads as ComfyUI loads it with bf16 weights on a CPU (float32 compute, weights cast per layer,
which gives the same numbers as its default float32 copy); the inputs come from `forward_inputs()` of
tests/nodes/test_flux_reference.py, and the velocity it returns is saved under `velocity`.
"""

import os
import sys
from pathlib import Path

MODEL_FILE = sys.argv[1]
sys.path.insert(0, os.environ["COMFYUI"])
sys.argv = [sys.argv[0], "--cpu"]
import comfy.options  # noqa: E402

comfy.options.enable_args_parsing()

import comfy.sd  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

HERE = Path(__file__).resolve().parent


def forward_inputs():
    """Latent [1, 16, 32, 32], sigma 0.7, T5 tokens [1, 256, 4096], CLIP-L pooled [1, 768], guidance 3.5."""
    g = torch.Generator().manual_seed(5)
    x = torch.randn(1, 16, 32, 32, generator=g)
    context = torch.randn(1, 256, 4096, generator=g) * 0.2
    pooled = torch.randn(1, 768, generator=g)
    return x, torch.tensor([0.7]), context, pooled, torch.tensor([3.5])


model = comfy.sd.load_diffusion_model(MODEL_FILE, model_options={"dtype": torch.bfloat16})
x, t, context, pooled, guidance = forward_inputs()
with torch.no_grad():
    out = model.model.diffusion_model(x, t, context, y=pooled, guidance=guidance).float()
save_file({"velocity": out.contiguous()}, str(HERE / "comfyui_flux_dev_d2s2_forward.safetensors"))
