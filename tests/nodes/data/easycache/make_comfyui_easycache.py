"""Regenerate comfyui_easycache.safetensors: ComfyUI 0.3.64's EasyCache on a stand-in flow model.

    COMFYUI=path/to/ComfyUI path/to/comfy-venv/bin/python make_comfyui_easycache.py

ComfyUI's own EasyCacheHolder, easycache_forward_wrapper and the skip-flag reset of its calc_cond_batch
wrapper run an Euler sampling loop as ComfyUI's flow models see it: the model input is the latent
itself (float32), the x0 prediction is input - sigma * output computed after the call, and the sigmas
are ComfyUI's "simple" schedule of ModelSamplingFlux (shift 1.15, 12 steps). The model is a fixed
function, output = tanh(x * a + sigma * b) with seeded a and b, so only the cache's decisions matter.

Scenarios (`<name>.*`): `one` (one conditioning, threshold 0.3), `two` (a negative and a positive
batched in one call, cfg 2.5, threshold 0.3) and `late` (start 0.4, end 0.7, threshold 1.0). Stored per
scenario: `x0s` (every step's guided x0), `latent` (the final latent), `skipped` (the number of skipped
steps ComfyUI counted), `sigmas` and `window` (the start and end sigmas). Inputs: `in.noise`, `in.a`, `in.b`.
"""

import os
import sys
from pathlib import Path

sys.path.insert(0, os.environ["COMFYUI"])
sys.argv = [sys.argv[0], "--cpu"]
import comfy.options  # noqa: E402

comfy.options.enable_args_parsing()

import comfy.model_sampling  # noqa: E402
import comfy.samplers  # noqa: E402
import torch  # noqa: E402
from comfy_extras import nodes_easycache as ec  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

HERE = Path(__file__).resolve().parent


class FluxSampling(comfy.model_sampling.ModelSamplingFlux, comfy.model_sampling.CONST):
    """ComfyUI's FLUX model sampling as its model_base builds it."""


def run(name, noise, a, b, conds, cfg, threshold, start, end, out):
    ms = FluxSampling(None)
    ms.set_parameters(shift=1.15)
    sigmas = comfy.samplers.simple_scheduler(ms, 12)
    holder = ec.EasyCacheHolder(threshold, start, end, subsample_factor=8, offload_cache_diff=False)
    holder.prepare_timesteps(ms)
    options = {"easycache": holder}

    def model(x, sigma, transformer_options):
        return torch.tanh(x * a + sigma.view(-1, 1, 1, 1) * b)

    x = noise * sigmas[0]
    x0s = []
    for i in range(len(sigmas) - 1):
        sigma = sigmas[i : i + 1]
        ec.easycache_calc_cond_batch_wrapper(lambda *args: None, {"transformer_options": options})
        input_x = torch.cat([x] * conds)
        topts = {**options, "sigmas": sigma.repeat(conds), "uuids": [f"c{k}" for k in range(conds)]}
        output = ec.easycache_forward_wrapper(model, input_x, sigma.repeat(conds), topts)
        denoised = input_x - output.float() * sigma.view(-1, 1, 1, 1)
        parts = denoised.chunk(conds)
        x0 = parts[0] if conds == 1 else parts[0] + (parts[1] - parts[0]) * cfg
        x0s.append(x0)
        x = x + (x - x0) / sigmas[i] * (sigmas[i + 1] - sigmas[i])
    out[f"{name}.x0s"] = torch.stack(x0s)
    out[f"{name}.latent"] = x
    out[f"{name}.skipped"] = torch.tensor(holder.total_steps_skipped)
    out[f"{name}.sigmas"] = sigmas
    out[f"{name}.window"] = torch.tensor([holder.start_t, holder.end_t], dtype=torch.float64)


g = torch.Generator().manual_seed(5)
noise = torch.randn(1, 16, 24, 20, generator=g)
a = torch.randn(1, 16, 24, 20, generator=g) * 0.3 + 0.9
b = torch.randn(1, 16, 24, 20, generator=g)
out = {"in.noise": noise, "in.a": a, "in.b": b}
run("one", noise, a, b, 1, 1.0, 0.3, 0.15, 0.95, out)
run("two", noise, a, b, 2, 2.5, 0.3, 0.15, 0.95, out)
run("late", noise, a, b, 1, 1.0, 1.0, 0.4, 0.7, out)
save_file({k: v.contiguous() for k, v in out.items()}, str(HERE / "comfyui_easycache.safetensors"))
print({k: (v.tolist() if v.numel() < 3 else tuple(v.shape)) for k, v in out.items()})
