"""Record ComfyUI 0.3.64's Differential Diffusion masks (run with ComfyUI's python on the CPU).

    COMFYUI=<ComfyUI checkout> <ComfyUI venv>/bin/python make_comfy_reference.py OUT.json

For an SD1.5-style discrete model sampling (ComfyUI's defaults) and a flow one (ModelSamplingDiscreteFlow,
shift 3), the 10-step `normal` / `simple` schedules, and the mask values below, the mask ComfyUI's
DifferentialDiffusion function returns at every step's sigma, for strengths 1 and 0.5.
"""

import json
import os
import sys
from types import SimpleNamespace

OUT = sys.argv[1]
sys.argv = [sys.argv[0], "--cpu"]
sys.path.insert(0, os.environ["COMFYUI"])
import comfy.options  # noqa: E402

comfy.options.enable_args_parsing()
import comfy.model_sampling  # noqa: E402
import comfy.samplers  # noqa: E402
import torch  # noqa: E402
from comfy_extras.nodes_differential_diffusion import DifferentialDiffusion  # noqa: E402

MASK = [0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0]


class Flow(comfy.model_sampling.ModelSamplingDiscreteFlow, comfy.model_sampling.CONST):
    pass


def sampling(kind):
    if kind == "discrete":
        return comfy.model_sampling.ModelSamplingDiscrete(None), "normal"
    config = SimpleNamespace(sampling_settings={"shift": 3.0, "multiplier": 1000})
    return Flow(config), "simple"


out = {"mask": MASK, "cases": {}}
for kind in ("discrete", "flow"):
    ms, scheduler = sampling(kind)
    sigmas = comfy.samplers.calculate_sigmas(ms, scheduler, 10)
    model = SimpleNamespace(inner_model=SimpleNamespace(model_sampling=ms))
    mask = torch.tensor(MASK).reshape(1, 1, 1, -1)
    for strength in (1.0, 0.5):
        rows = []
        for sigma in sigmas[:-1]:
            res = DifferentialDiffusion.forward(
                sigma.reshape(1), mask, {"model": model, "sigmas": sigmas}, strength=strength
            )
            rows.append(res.flatten().tolist())
        out["cases"][f"{kind}_{strength}"] = {"sigmas": sigmas.tolist(), "masks": rows}
with open(OUT, "w") as f:
    json.dump(out, f, indent=1)
