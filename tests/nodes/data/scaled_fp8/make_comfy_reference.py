"""Record ComfyUI 0.3.64's forward of scaled-fp8 diffusion models (run with ComfyUI's python, on the CPU).

    COMFYUI=<ComfyUI checkout> <ComfyUI venv>/bin/python make_comfy_reference.py FILE OUT [flux|sd3]

FILE is written by diffgraph's make-checkpoint with --scaled-fp8 (see README.md). ComfyUI loads it as its
UNETLoader does (comfy.sd.load_diffusion_model, which finds the `scaled_fp8` marker and builds its
scaled fp8 Linear layers); the inputs are drawn here from a seeded CPU generator and saved beside the
output, so the test feeds the very same tensors.
"""

import os
import sys

ARGS = sys.argv[1:]
sys.argv = [sys.argv[0], "--cpu"]
sys.path.insert(0, os.environ["COMFYUI"])
import comfy.options  # noqa: E402

comfy.options.enable_args_parsing()
import comfy.sd  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

path, out, family = ARGS[0], ARGS[1], ARGS[2]
patcher = comfy.sd.load_diffusion_model(path)
model = patcher.model.diffusion_model
g = torch.Generator().manual_seed(11)
if family == "flux":
    x = torch.randn(1, 16, 16, 16, generator=g)
    timesteps = torch.tensor([0.7])
    context = torch.randn(1, 8, 4096, generator=g) * 0.2
    pooled = torch.randn(1, 768, generator=g)
    extra = {"guidance": torch.tensor([3.5])}
else:
    width = model.context_embedder.weight.shape[1]
    pooled_width = model.y_embedder.mlp[0].weight.shape[1]
    x = torch.randn(1, 16, 16, 16, generator=g)
    timesteps = torch.tensor([700.0])
    context = torch.randn(1, 8, width, generator=g) * 0.2
    pooled = torch.randn(1, pooled_width, generator=g)
    extra = {}
with torch.no_grad():
    velocity = model(x, timesteps, context, y=pooled, **extra).float()
tensors = {"x": x, "timesteps": timesteps, "context": context, "pooled": pooled, "velocity": velocity}
save_file(
    {k: v.contiguous() for k, v in tensors.items()}, out, metadata={"comfyui": "0.3.64", "device": "cpu"}
)
print(family, tuple(velocity.shape), float(velocity.norm()))
