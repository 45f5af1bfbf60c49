"""Writes latent.safetensors: ComfyUI 0.3.64's unCLIP image-variation latent on a reduced random unCLIP-L file.

How it was made (CPU, 2 threads, ComfyUI's own venv, torch 2.13):

    python -m diffgraph make-checkpoint --arch sd2-unclip --size reduced --seed 2024 \\
        MODELS/checkpoints/sd21-unclip-l-reduced.safetensors          # 1,641,283,224 bytes
    PYTHONPATH=<ComfyUI> <comfy venv>/bin/python make_latent_reference.py MODELS OUT_DIR

The graph (ComfyUI's own node classes, called in-process): unCLIPCheckpointLoader -> LoadImage
(photo.png, 96x80) -> CLIPVisionEncode (crop center) -> unCLIPConditioning (strength 1.0, noise
augmentation 0.1) on CLIPTextEncode "a red barn in a snowy field"; negative "blurry, low quality";
EmptyLatentImage 256x256 -> KSampler seed 42, 4 steps, cfg 7, euler / normal, denoise 1.
The saved tensor is the KSampler's LATENT samples (raw VAE space), float32 [1, 4, 32, 32].
"""

import os
import sys

import comfy.cli_args
import torch
from safetensors.torch import save_file

comfy.cli_args.args.cpu = True  # before comfy.model_management is imported: no CUDA probing
torch.set_num_threads(2)

import folder_paths  # noqa: E402

import nodes  # noqa: E402

CKPT = "sd21-unclip-l-reduced.safetensors"


def main(models: str, out_dir: str) -> None:
    folder_paths.add_model_folder_path("checkpoints", os.path.join(models, "checkpoints"))
    folder_paths.set_input_directory(os.path.dirname(os.path.abspath(__file__)))
    model, clip, _vae, vision = nodes.unCLIPCheckpointLoader().load_checkpoint(CKPT)
    image = nodes.LoadImage().load_image("photo.png")[0]
    encoded = nodes.CLIPVisionEncode().encode(vision, image, "center")[0]
    positive = nodes.CLIPTextEncode().encode(clip, "a red barn in a snowy field")[0]
    negative = nodes.CLIPTextEncode().encode(clip, "blurry, low quality")[0]
    positive = nodes.unCLIPConditioning().apply_adm(positive, encoded, 1.0, 0.1)[0]
    latent = nodes.EmptyLatentImage().generate(256, 256, 1)[0]
    out = nodes.common_ksampler(
        model, 42, 4, 7.0, "euler", "normal", positive, negative, latent, denoise=1.0
    )[0]
    save_file({"latent": out["samples"].float().contiguous()}, os.path.join(out_dir, "latent.safetensors"))
    save_file(
        {"image_embeds": encoded.image_embeds.float().contiguous()},
        os.path.join(out_dir, "image_embeds.safetensors"),
    )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
