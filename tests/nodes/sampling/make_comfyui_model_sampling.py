"""Regenerate data/comfyui_model_sampling_discrete.json: ComfyUI's ModelSamplingDiscrete on fixed inputs.

Needs a ComfyUI 0.3.64 checkout and its Python (not a test dependency):

    COMFYUI=path/to/ComfyUI path/to/comfy-venv/bin/python tests/nodes/sampling/make_comfyui_model_sampling.py

For every `sampling` choice with zsnr off and on, it runs the node's own patch on a stand-in model
(default SD settings) and records the table (ends, every 37th entry), the sigma <-> timestep maps, the
input scaling and the denoised value for fixed tensors, and KSampler's schedules for six steps.
"""

import json
import os
import sys
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, os.environ["COMFYUI"])
os.chdir(os.environ["COMFYUI"])
sys.argv = [sys.argv[0], "--cpu"]
import comfy.options  # noqa: E402

comfy.options.enable_args_parsing()

import comfy.samplers  # noqa: E402
import torch  # noqa: E402
from comfy_extras.nodes_model_advanced import ModelSamplingDiscrete  # noqa: E402

SAMPLINGS = ["eps", "v_prediction", "lcm", "x0", "img_to_img"]
SIGMAS = [0.03, 0.5, 1.7, 7.0, 14.0]
TIMESTEPS = [0.0, 10.5, 499.0, 990.0]
PERCENTS = [0.0, 0.1, 0.5, 0.9, 1.0]
SCHEDULERS = ["simple", "normal", "karras", "sgm_uniform"]


class _Model:
    def __init__(self):
        self.model = SimpleNamespace(model_config=None)
        self.patches = {}

    def clone(self):
        return self

    def add_object_patch(self, name, obj):
        self.patches[name] = obj


def case(sampling: str, zsnr: bool) -> dict:
    ms = ModelSamplingDiscrete().patch(_Model(), sampling, zsnr)[0].patches["model_sampling"]
    g = torch.Generator().manual_seed(3)
    x, out = torch.randn(2, 1, 2, 2, generator=g), torch.randn(2, 1, 2, 2, generator=g)
    sigma = torch.tensor([0.5, 7.0])
    return {
        "sigmas_every_37": ms.sigmas[::37].tolist(),
        "sigma_min": float(ms.sigma_min),
        "sigma_max": float(ms.sigma_max),
        "table_size": len(ms.sigmas),
        "timestep": ms.timestep(torch.tensor(SIGMAS)).float().tolist(),
        "sigma": ms.sigma(torch.tensor(TIMESTEPS)).tolist(),
        "percent_to_sigma": [float(ms.percent_to_sigma(p)) for p in PERCENTS],
        "x": x.flatten().tolist(),
        "out": out.flatten().tolist(),
        "batch_sigma": sigma.tolist(),
        "input": ms.calculate_input(sigma, x).flatten().tolist(),
        "denoised": ms.calculate_denoised(sigma, out, x).flatten().tolist(),
        "schedules": {s: comfy.samplers.calculate_sigmas(ms, s, 6).tolist() for s in SCHEDULERS},
    }


def main() -> None:
    result = {
        "sigmas": SIGMAS,
        "timesteps": TIMESTEPS,
        "percents": PERCENTS,
        "cases": {f"{s}/zsnr={z}": case(s, z) for s in SAMPLINGS for z in (False, True)},
    }
    out = Path(__file__).resolve().parent / "data" / "comfyui_model_sampling_discrete.json"
    out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
