"""Writes adm_reference.safetensors: ComfyUI 0.3.64's unCLIP image conditioning vectors on fixed inputs.

Run with ComfyUI's own Python from its source folder on the path (nothing else is needed; no model):

    PYTHONPATH=<ComfyUI> <comfy venv>/bin/python make_reference.py OUT_DIR

It builds ComfyUI's CLIPEmbeddingNoiseAugmentation as SD2.1 unCLIP-H configures it (squaredcos_cap_v2,
1000 steps, timestep_dim 1024) and calls comfy.model_base.unclip_adm with seeded random image
embeddings, for one image at several strengths, noise levels and seeds. The multi-image merge draws
unseeded noise in ComfyUI, so it is not recorded.
"""

import sys

import comfy.cli_args
import torch
from safetensors.torch import save_file

comfy.cli_args.args.cpu = True  # before comfy.model_management is imported: no CUDA probing

from comfy.ldm.modules.encoders.noise_aug_modules import CLIPEmbeddingNoiseAugmentation  # noqa: E402
from comfy.model_base import unclip_adm  # noqa: E402


class _Out:
    def __init__(self, embeds):
        self.image_embeds = embeds


def main(out_dir: str) -> None:
    aug = CLIPEmbeddingNoiseAugmentation(
        noise_schedule_config={"timesteps": 1000, "beta_schedule": "squaredcos_cap_v2"}, timestep_dim=1024
    )
    embeds = torch.randn(1, 1024, generator=torch.Generator().manual_seed(7))
    tensors = {"image_embeds": embeds}
    cases = [(1.0, 0.0, 42), (1.0, 0.1, 42), (0.7, 0.35, 5), (-2.0, 1.0, 123456789)]
    for i, (strength, level, seed) in enumerate(cases):
        cond = [{"clip_vision_output": _Out(embeds), "strength": strength, "noise_augmentation": level}]
        # ComfyUI passes the sampling seed minus 10 (SD21UNCLIP.encode_adm).
        tensors[f"adm_{i}"] = unclip_adm(cond, "cpu", aug, seed=seed - 10)
        tensors[f"case_{i}"] = torch.tensor([strength, level, float(seed)], dtype=torch.float64)
    save_file(tensors, f"{out_dir}/adm_reference.safetensors")


if __name__ == "__main__":
    main(sys.argv[1])
