"""Regenerate data/comfyui_flow_sampling.json: ComfyUI's schedules and samplers on flow-matching models.

Needs a ComfyUI 0.3.64 checkout and its Python (not a test dependency):

    COMFYUI=path/to/ComfyUI path/to/comfy-venv/bin/python tests/nodes/sampling/make_comfyui_flow.py

For FLUX's model sampling (shift 1.15, and the ModelSamplingFlux shift of a 512x768 image) and a
discrete-flow one (SD3's shift 3.0) it records every scheduler's sigmas for 6 steps, then runs every
ComfyUI sampler (comfy.samplers.sampler_object(name)) for 5 steps of the simple schedule on the toy
CFG denoiser of `flow_cases.py`, seed 42, starting from flow noise scaling of a fixed latent.
"""

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, os.environ["COMFYUI"])
os.chdir(os.environ["COMFYUI"])
sys.argv = [sys.argv[0], "--cpu"]
import comfy.options  # noqa: E402

comfy.options.enable_args_parsing()

import torch  # noqa: E402
from comfy import model_sampling, samplers  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from flow_cases import FLOW_PARAMS, SEED, STEPS, start_latent, toy_cfg  # noqa: E402


def _ms(kind: str, shift: float, multiplier: float):
    if kind == "flux":

        class MS(model_sampling.ModelSamplingFlux, model_sampling.CONST):
            pass

        ms = MS(None)
        ms.set_parameters(shift=shift)
        return ms

    class MSD(model_sampling.ModelSamplingDiscreteFlow, model_sampling.CONST):
        pass

    ms = MSD(None)
    ms.set_parameters(shift=shift, multiplier=multiplier)
    return ms


class _Inner:
    def __init__(self, ms):
        self.model_sampling = ms


class _Patcher:
    def __init__(self, ms):
        self.ms = ms

    def get_model_object(self, name):
        assert name == "model_sampling"
        return self.ms


class _Wrap:
    def __init__(self, ms):
        self.inner_model = _Inner(ms)
        self.model_patcher = _Patcher(ms)


class _ToyK:
    """What ComfyUI's samplers call: D(x, sigma) with the post-CFG hooks its CFG++ samplers install."""

    def __init__(self, ms):
        self.inner_model = _Wrap(ms)

    def __call__(self, x, sigma, model_options=None, seed=None):
        denoised, uncond = toy_cfg(x, sigma)
        for fn in (model_options or {}).get("sampler_post_cfg_function", []):
            denoised = fn({"denoised": denoised, "uncond_denoised": uncond, "sigma": sigma, "input": x})
        return denoised


def main() -> None:
    out: dict = {"schedules": {}, "samplers": {}}
    for label, (kind, shift, multiplier) in FLOW_PARAMS.items():
        ms = _ms(kind, shift, multiplier)
        out["schedules"][label] = {
            name: samplers.calculate_sigmas(ms, name, STEPS + 1).tolist() for name in samplers.SCHEDULER_NAMES
        }
        out["schedules"][label]["percent_0.3"] = ms.percent_to_sigma(0.3)
        sigmas = samplers.calculate_sigmas(ms, "simple", STEPS).float()
        results = {}
        for name in samplers.SAMPLER_NAMES:
            ks = samplers.sampler_object(name)
            latent, noise = start_latent()
            x = ms.noise_scaling(sigmas[0], noise, latent)
            model = _ToyK(ms)
            extra_args = {"seed": SEED, "model_options": {}}
            with torch.no_grad():
                y = ks.sampler_function(
                    model, x, sigmas, extra_args=extra_args, callback=None, disable=True, **ks.extra_options
                )
            y = ms.inverse_noise_scaling(sigmas[-1], y)
            results[name] = y.flatten().tolist()
        out["samplers"][label] = results
    path = Path(__file__).resolve().parent / "data" / "comfyui_flow_sampling.json"
    path.write_text(json.dumps(out) + "\n")


main()
