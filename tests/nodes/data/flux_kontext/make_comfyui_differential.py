"""Regenerate comfyui_differential.safetensors: ComfyUI 0.3.64's DifferentialDiffusion masks per step.

    COMFYUI=path/to/ComfyUI path/to/comfy-venv/bin/python make_comfyui_differential.py

For SD's discrete eps sampling (karras, 6 steps) and FLUX's (shift 1.15, simple, 6 steps) it saves the
sigmas (`<kind>.sigmas`), a soft mask (`mask`) and, for strengths 1 and 0.6, the mask DifferentialDiffusion
hands the sampler at each step (`<kind>.<strength>`, stacked over steps).
"""

import os
import sys
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, os.environ["COMFYUI"])
sys.argv = [sys.argv[0], "--cpu"]
import comfy.options  # noqa: E402

comfy.options.enable_args_parsing()

import comfy.model_sampling  # noqa: E402
import comfy.samplers  # noqa: E402
import torch  # noqa: E402
from comfy_extras.nodes_differential_diffusion import DifferentialDiffusion  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

HERE = Path(__file__).resolve().parent


class SdSampling(comfy.model_sampling.ModelSamplingDiscrete, comfy.model_sampling.EPS):
    """SD1.5's eps sampling with the default schedule."""


class FluxSampling(comfy.model_sampling.ModelSamplingFlux, comfy.model_sampling.CONST):
    """FLUX's sampling at the default shift."""


mask = torch.rand(1, 4, 6, 6, generator=torch.Generator().manual_seed(3))
out = {"mask": mask}
for kind, ms, scheduler in (("sd", SdSampling(), "karras"), ("flux", FluxSampling(), "simple")):
    sigmas = comfy.samplers.calculate_sigmas(ms, scheduler, 6)
    out[f"{kind}.sigmas"] = sigmas
    extra = {"model": SimpleNamespace(inner_model=SimpleNamespace(model_sampling=ms)), "sigmas": sigmas}
    for strength in (1.0, 0.6):
        steps = [
            DifferentialDiffusion.forward(sigmas[i : i + 1], mask, extra, strength=strength)
            for i in range(len(sigmas) - 1)
        ]
        out[f"{kind}.{strength}"] = torch.stack(steps)
save_file({k: v.float().contiguous() for k, v in out.items()}, str(HERE / "comfyui_differential.safetensors"))
