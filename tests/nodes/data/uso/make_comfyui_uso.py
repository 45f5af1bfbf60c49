"""Regenerate comfyui_uso.safetensors: ComfyUI 0.3.64's SigLIP encoding, USO projection and FLUX forward.

Needs a ComfyUI checkout, its Python and the tiny random files of make-checkpoint (seed 0):

    diffgraph make-checkpoint --arch siglip-vision --size tiny --seed 0 siglip.safetensors
    diffgraph make-checkpoint --arch uso-projector --size tiny --seed 0 uso.safetensors
    diffgraph make-checkpoint --arch flux1-dev --size tiny --seed 0 dev.safetensors
    COMFYUI=path/to/ComfyUI path/to/comfy-venv/bin/python make_comfyui_uso.py siglip.safetensors \
        uso.safetensors dev.safetensors

ComfyUI recognises SigLIP, the USO projector and FLUX by their published sizes only, so its classes
are built here directly at the tiny sizes: ClipVisionModel from a SigLIP config of the tiny tower
(16 wide, 20 layers, 2 heads, 42 px), SigLIPMultiFeatProjModel with 9 tokens, 4 style tokens, 16 wide
into 256, and the FLUX model of ../comfy_tiny_flux.py. The image
encoder keeps ComfyUI's CPU default (fp16 weights, float32 compute; the file is fp16).

Inputs (`in.*`) are drawn from a seeded CPU generator. Outputs: `vision.*` (CLIPVisionEncode with
crop "center": last_hidden_state, penultimate_hidden_states, all_hidden_states), `tokens` (the
projector on USOStyleReference's stacked layers), `forward.none`, `forward.uso` (one
USOStyleReference) and `forward.uso2` (two stacked), the FLUX forward on a batch of one.
"""

import json
import os
import sys
import tempfile
from pathlib import Path

SIGLIP_FILE, USO_FILE, DEV_FILE = sys.argv[1:4]
sys.path.insert(0, os.environ["COMFYUI"])
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))  # comfy_tiny_flux
sys.argv = [sys.argv[0], "--cpu"]
import comfy.options  # noqa: E402

comfy.options.enable_args_parsing()

import comfy.clip_vision  # noqa: E402
import comfy.ops  # noqa: E402
import comfy_tiny_flux  # noqa: E402
import torch  # noqa: E402
from comfy_extras import nodes_model_patch  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

HERE = Path(__file__).resolve().parent
SIGLIP_CONFIG = {
    "num_channels": 3,
    "hidden_act": "gelu_pytorch_tanh",
    "hidden_size": 16,
    "image_size": 42,
    "intermediate_size": 32,
    "model_type": "siglip_vision_model",
    "num_attention_heads": 2,
    "num_hidden_layers": 20,
    "patch_size": 14,
    "image_mean": [0.5, 0.5, 0.5],
    "image_std": [0.5, 0.5, 0.5],
}


def tiny_flux(path):
    """ComfyUI's FLUX model class at the tiny size with the file's weights (float32)."""
    return comfy_tiny_flux.tiny_flux(load_file(path), 16)


class Handle:
    """What UsoStyleProjectorPatch reads from a ModelPatcher: the module as `.model`."""

    def __init__(self, model):
        self.model = model


class PatchRecorder:
    """A stand-in MODEL for USOStyleReference: keeps the post-input patch the node sets."""

    def clone(self):
        return self

    def set_model_post_input_patch(self, patch):
        self.post_input = patch


g = torch.Generator().manual_seed(11)
inputs = {
    "image": torch.rand(1, 50, 61, 3, generator=g),
    "x": torch.randn(1, 16, 10, 12, generator=g),
    "sigma": torch.tensor([0.7]),
    "context": torch.randn(1, 9, 128, generator=g) * 0.5,
    "pooled": torch.randn(1, 64, generator=g),
    "guidance": torch.tensor([3.5]),
}
out = {f"in.{k}": v for k, v in inputs.items()}

with tempfile.TemporaryDirectory() as tmp:
    config = Path(tmp) / "siglip_tiny.json"
    config.write_text(json.dumps(SIGLIP_CONFIG))
    vision = comfy.clip_vision.ClipVisionModel(str(config))
missing, unexpected = vision.load_sd(load_file(SIGLIP_FILE))
assert not missing, missing
encoded = vision.encode_image(inputs["image"], crop=True)
out["vision.last_hidden_state"] = encoded["last_hidden_state"].float()
out["vision.penultimate_hidden_states"] = encoded["penultimate_hidden_states"].float()
out["vision.all_hidden_states"] = encoded["all_hidden_states"].float()

sd = comfy.utils.state_dict_prefix_replace(load_file(USO_FILE), {"feature_embedder.": ""}, filter_keys=True)
projector = nodes_model_patch.SigLIPMultiFeatProjModel(
    siglip_token_nums=9,
    style_token_nums=4,
    siglip_token_dims=16,
    hidden_size=256,
    dtype=torch.float32,
    operations=comfy.ops.manual_cast,
)
projector.load_state_dict(sd)
(recorder,) = nodes_model_patch.USOStyleReference().apply_patch(PatchRecorder(), Handle(projector), encoded)
patch = recorder.post_input
states = patch.encoded_image
flux = tiny_flux(DEV_FILE)
args = (inputs["x"], inputs["sigma"], inputs["context"])
kw = {"y": inputs["pooled"], "guidance": inputs["guidance"]}
with torch.no_grad():
    out["tokens"] = projector(states.float())
    out["forward.none"] = flux(*args, **kw).float()
    for name, patches in (("uso", [patch]), ("uso2", [patch, patch])):
        options = {"patches": {"post_input": patches}}
        out[f"forward.{name}"] = flux(*args, transformer_options=options, **kw).float()
save_file({k: v.contiguous().clone() for k, v in out.items()}, str(HERE / "comfyui_uso.safetensors"))
print({k: tuple(v.shape) for k, v in out.items()})
