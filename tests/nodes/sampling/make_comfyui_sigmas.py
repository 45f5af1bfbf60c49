"""Regenerate comfyui_sigma_nodes.json: ComfyUI's own scheduler and sigma nodes on fixed inputs.

Needs a ComfyUI 0.3.64 checkout and its Python (not a test dependency):

    COMFYUI=path/to/ComfyUI path/to/comfy-venv/bin/python tests/nodes/sampling/make_comfyui_sigmas.py

It imports ComfyUI's node classes, runs each case below on the SD1.5 noise table (ComfyUI's default
ModelSamplingDiscrete), and writes every output as a list of floats.
"""

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, os.environ["COMFYUI"])
os.chdir(os.environ["COMFYUI"])
# ComfyUI reads its command line at import only when asked to: run it as its --cpu server runs.
sys.argv = [sys.argv[0], "--cpu"]
import comfy.options  # noqa: E402

comfy.options.enable_args_parsing()

import torch  # noqa: E402
from comfy import model_sampling  # noqa: E402
from comfy_extras import nodes_align_your_steps, nodes_custom_sampler, nodes_gits  # noqa: E402

# ComfyUI has a `tests` package of its own, so the cases are read by path.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from sigma_cases import CASES  # noqa: E402


class _Model:
    def __init__(self):
        self.ms = model_sampling.ModelSamplingDiscrete(None)

    def get_model_object(self, name):
        assert name == "model_sampling"
        return self.ms


def run(node: str, inputs: dict) -> list[list[float]]:
    kwargs = dict(inputs)
    if "model" in kwargs:
        kwargs["model"] = _Model()
    if "sigmas" in kwargs:
        kwargs["sigmas"] = torch.tensor(kwargs["sigmas"], dtype=torch.float32)
    if node == "AlignYourStepsScheduler":
        out = nodes_align_your_steps.AlignYourStepsScheduler.execute(**kwargs).result
    elif node == "GITSScheduler":
        out = nodes_gits.GITSScheduler.execute(**kwargs).result
    else:
        cls = getattr(nodes_custom_sampler, node)
        out = getattr(cls(), cls.FUNCTION)(**kwargs)
    return [t.tolist() for t in out]


results = [{"node": n, "inputs": i, "outputs": run(n, i)} for n, i in CASES]
target = Path(__file__).resolve().parents[1] / "data" / "comfyui_sigma_nodes.json"
target.write_text(json.dumps({"comfyui": "0.3.64", "cases": results}, indent=1))
