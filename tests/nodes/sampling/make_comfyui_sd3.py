"""Regenerate data/sd3/latents.safetensors: ComfyUI's final latents for the SD3.5 cases in sd3_cases.py.

Needs a ComfyUI 0.3.64 checkout, its Python and the reduced-depth SD3.5-medium reference file (not test
dependencies; `diffgraph make-checkpoint --arch sd3.5-medium --size reduced --seed 1234` rebuilds it):

    COMFYUI=path/to/ComfyUI SD35_FILE=path/to/sd3.5m-random-d2.safetensors \
        path/to/comfy-venv/bin/python tests/nodes/sampling/make_comfyui_sd3.py

It loads the file with ComfyUI's checkpoint loader on CPU (float32), patches the model with
ModelSamplingSD3 / ModelSamplingAuraFlow and SkipLayerGuidanceSD3 as each case asks, and runs
ComfyUI's KSampler path (comfy.sample.sample with the seed's noise) on an empty 16-channel latent.
The saved latents are in raw VAE space, as SaveLatent writes them.
"""

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, os.environ["COMFYUI"])
os.chdir(os.environ["COMFYUI"])
sys.argv = [sys.argv[0], "--cpu"]
import comfy.options  # noqa: E402

comfy.options.enable_args_parsing()

import comfy.sample  # noqa: E402
import comfy.sd  # noqa: E402
import comfy.utils  # noqa: E402
import torch  # noqa: E402
from comfy_extras.nodes_model_advanced import ModelSamplingAuraFlow, ModelSamplingSD3  # noqa: E402
from comfy_extras.nodes_sd3 import SkipLayerGuidanceSD3  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

# ComfyUI has a `tests` package of its own, so the cases are read by path.
sys.path.insert(0, str(HERE))
from sd3_cases import CASES, LATENT_SHAPE, conditioning  # noqa: E402


def main() -> None:
    sd, metadata = comfy.utils.load_torch_file(os.environ["SD35_FILE"], return_metadata=True)
    base = comfy.sd.load_state_dict_guess_config(sd, output_vae=False, output_clip=False, metadata=metadata)[
        0
    ]
    cond = conditioning()
    positive = [[cond["positive"], {"pooled_output": cond["positive_pooled"]}]]
    negative = [[cond["negative"], {"pooled_output": cond["negative_pooled"]}]]
    out = {}
    for name, case in CASES.items():
        if case.get("sampling") == "auraflow":
            model = ModelSamplingAuraFlow().patch_aura(base, case["shift"])[0]
        else:
            model = ModelSamplingSD3().patch(base, case["shift"])[0]
        if "slg" in case:
            model = SkipLayerGuidanceSD3.execute(model, **case["slg"]).result[0]
        latent = torch.zeros(LATENT_SHAPE)
        noise = comfy.sample.prepare_noise(latent, case["seed"])
        samples = comfy.sample.sample(
            model,
            noise,
            case["steps"],
            case["cfg"],
            case["sampler"],
            case["scheduler"],
            positive,
            negative,
            latent,
            denoise=1.0,
            seed=case["seed"],
        )
        out[name] = samples.float().contiguous()
        print(name, float(out[name].std()))
    save_file(out, str(HERE / "data" / "sd3" / "latents.safetensors"))


if __name__ == "__main__":
    main()
