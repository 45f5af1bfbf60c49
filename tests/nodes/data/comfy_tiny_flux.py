"""ComfyUI's FLUX model class at the tiny make-checkpoint size, for the scripts that record ComfyUI's numbers.

Imported by flux_kontext/make_comfyui_forward.py and flux_control/make_comfyui_control.py, which run
with ComfyUI's Python after putting ComfyUI on sys.path; ComfyUI's own file detection assumes FLUX's
full width, so the class is built here with the tiny sizes (hidden 256, 2 heads, 1 + 1 blocks, T5
width 128, CLIP-L 64) and the given tensors loaded into it as float32.
"""

import comfy.ldm.flux.model
import comfy.ops
import torch


def tiny_flux(state: dict, in_channels: int):
    """ComfyUI's FLUX model at the tiny size holding `state` (float32 tensors, BFL names)."""
    model = comfy.ldm.flux.model.Flux(
        in_channels=in_channels,
        out_channels=16,
        vec_in_dim=64,
        context_in_dim=128,
        hidden_size=256,
        mlp_ratio=4.0,
        num_heads=2,
        depth=1,
        depth_single_blocks=1,
        axes_dim=[16, 56, 56],
        theta=10000,
        patch_size=2,
        qkv_bias=True,
        guidance_embed=True,
        dtype=torch.float32,
        operations=comfy.ops.disable_weight_init,
    )
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    return model.eval()
