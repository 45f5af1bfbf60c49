"""Regenerate data/sd3/latents_text.safetensors: a whole SD3.5 txt2img in ComfyUI on the reference files.

Needs a ComfyUI 0.3.64 checkout, its Python, and a models folder (FLOW_MODELS) holding
checkpoints/sd3.5m-random-d2.safetensors and text_encoders/{clip_l-random, clip_g-random}.safetensors
(rebuilt by `diffgraph make-checkpoint`, seed 1234: --arch sd3.5-medium --size reduced; --arch clip_l /
clip_g --size full):

    COMFYUI=path/to/ComfyUI FLOW_MODELS=path/to/models path/to/comfy-venv/bin/python \
        tests/nodes/sampling/make_comfyui_sd3_text.py

It runs the nodes of the graph in TEXT_CASE with ComfyUI's own node classes on CPU: DualCLIPLoader
(type sd3, i.e. comfy.sd.load_clip with CLIPType.SD3),
CLIPTextEncode (positive and negative), CheckpointLoaderSimple, ModelSamplingSD3 and KSampler on an
EmptySD3LatentImage-style zero latent, and saves the final latent (raw VAE space, as SaveLatent writes it).
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

import comfy.sd  # noqa: E402
import comfy.utils  # noqa: E402
import torch  # noqa: E402
from comfy_extras.nodes_model_advanced import ModelSamplingSD3  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

import nodes  # noqa: E402

sys.path.insert(0, str(HERE))
from sd3_cases import TEXT_CASE  # noqa: E402


def main() -> None:
    models = Path(os.environ["FLOW_MODELS"])
    case = TEXT_CASE
    clip = comfy.sd.load_clip(
        ckpt_paths=[str(models / "text_encoders" / name) for name in case["clip_files"]],
        clip_type=comfy.sd.CLIPType.SD3,
    )
    positive = nodes.CLIPTextEncode().encode(clip, case["positive"])[0]
    negative = nodes.CLIPTextEncode().encode(clip, case["negative"])[0]
    del clip
    sd, metadata = comfy.utils.load_torch_file(
        str(models / "checkpoints" / case["ckpt"]), return_metadata=True
    )
    model = comfy.sd.load_state_dict_guess_config(sd, output_vae=False, output_clip=False, metadata=metadata)[
        0
    ]
    model = ModelSamplingSD3().patch(model, case["shift"])[0]
    # EmptySD3LatentImage's output: zeros, 16 channels at 1/8 of the image size.
    latent = {"samples": torch.zeros(1, 16, case["height"] // 8, case["width"] // 8)}
    out = nodes.common_ksampler(
        model,
        case["seed"],
        case["steps"],
        case["cfg"],
        case["sampler"],
        case["scheduler"],
        positive,
        negative,
        latent,
        denoise=1.0,
    )[0]["samples"]
    print("text_euler_simple", float(out.std()), tuple(positive[0][0].shape))
    save_file(
        {"text_euler_simple": out.float().contiguous()},
        str(HERE / "data" / "sd3" / "latents_text.safetensors"),
    )


if __name__ == "__main__":
    main()
