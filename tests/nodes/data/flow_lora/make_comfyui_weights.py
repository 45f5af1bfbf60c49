"""Regenerate comfyui_lora_weights.safetensors: weights ComfyUI 0.3.64 patches with FLUX / SD3.5 LoRAs on CPU.

Make the tiny input files with diffgraph first (FILES in tests/nodes/test_lora_flow.py lists the commands;
`python -m tests.nodes.test_lora_flow DIR` writes them all), then run this with ComfyUI's Python:

    COMFYUI=path/to/ComfyUI path/to/comfy-venv/bin/python make_comfyui_weights.py DIR

Each case loads the model as ComfyUI's UNETLoader / CheckpointLoaderSimple do (bf16 FLUX held in float32
on a CPU, or float8 with weight_dtype fp8_e4m3fn; the fp16 SD3.5 file in float32) and the text encoders as
CLIPLoader does (float16; the full-size CLIP-L, DIR/clip_l-random.safetensors, make-checkpoint --arch
clip_l --size full --seed 1234), applies the LoRA(s)
with `comfy.sd.load_lora_for_models` (what LoraLoader calls), patches the weights as a sampler would (`load_models_gpu`),
and keeps, for each weight in WATCH, the first 64 columns of every 32nd row (`<case>/<key>/rows`) and float64 sums of the whole
weight and of its squares (`<case>/<key>/stats`). Keys are ComfyUI's state-dict names.
"""

import os
import sys
from pathlib import Path

DIR = Path(sys.argv[1])
sys.path.insert(0, os.environ["COMFYUI"])
sys.argv = [sys.argv[0], "--cpu"]
import comfy.options  # noqa: E402

comfy.options.enable_args_parsing()

import comfy.model_detection  # noqa: E402
import comfy.model_management  # noqa: E402
import comfy.sd  # noqa: E402
import comfy.utils  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

HERE = Path(__file__).resolve().parent
_detect = comfy.model_detection.detect_unet_config


def detect_with_width(state_dict, key_prefix, metadata=None):
    """ComfyUI's detection, with a FLUX's width, heads and text width read from its tensors.

    ComfyUI fixes them at the published 3072 / 24 / 4096; the tiny test files are 256 wide.
    """
    config = _detect(state_dict, key_prefix, metadata=metadata)
    if config and config.get("image_model") == "flux":
        hidden = state_dict[key_prefix + "img_in.weight"].shape[0]
        config["hidden_size"], config["num_heads"] = hidden, hidden // 128
        config["context_in_dim"] = state_dict[key_prefix + "txt_in.weight"].shape[1]
    return config


comfy.model_detection.detect_unet_config = detect_with_width
STRIDE = 32
COLUMNS = 64
FLUX_WATCH = (
    "diffusion_model.double_blocks.0.img_attn.qkv.weight",
    "diffusion_model.double_blocks.0.txt_attn.qkv.weight",
    "diffusion_model.double_blocks.0.img_mlp.0.weight",
    "diffusion_model.single_blocks.0.linear1.weight",
    "diffusion_model.single_blocks.0.linear2.weight",
    "diffusion_model.final_layer.adaLN_modulation.1.weight",
)
SD3_WATCH = (
    "diffusion_model.joint_blocks.0.x_block.attn.qkv.weight",
    "diffusion_model.joint_blocks.0.x_block.attn2.qkv.weight",
    "diffusion_model.joint_blocks.1.context_block.attn.qkv.weight",
    "diffusion_model.joint_blocks.1.context_block.adaLN_modulation.1.weight",
    "diffusion_model.joint_blocks.1.x_block.mlp.fc2.weight",
    "diffusion_model.final_layer.adaLN_modulation.1.weight",
)
CLIP_WATCH = (
    "clip_l.transformer.text_model.encoder.layers.0.self_attn.q_proj.weight",
    "clip_l.transformer.text_model.encoder.layers.1.mlp.fc2.weight",
    "clip_l.transformer.text_model.encoder.layers.11.self_attn.out_proj.weight",
)
# case -> (family, model options, LoRA files, strength_model, strength_clip)
CASES = {
    "flux_kohya": ("flux", None, ["lora-flux-kohya.safetensors"], 0.8, 1.0),
    "flux_diffusers": ("flux", None, ["lora-flux-diffusers.safetensors"], 1.0, 0.5),
    "flux_bfl": ("flux", None, ["lora-flux-bfl.safetensors"], 1.0, 1.0),
    "flux_bfl_dora": ("flux", None, ["lora-flux-bfl-dora.safetensors"], 0.7, 1.0),
    "flux_fp8_stacked": (
        "flux",
        torch.float8_e4m3fn,
        ["lora-flux-kohya.safetensors", "lora-flux-diffusers.safetensors"],
        1.0,
        1.0,
    ),
    "sd3_kohya": ("sd3", None, ["lora-sd3-kohya.safetensors"], 1.0, 0.9),
    "sd3_diffusers": ("sd3", None, ["lora-sd3-diffusers.safetensors"], 0.6, 1.0),
    "sd3_native": ("sd3", None, ["lora-sd3-native.safetensors"], 1.0, 1.0),
}


def load(family, dtype):
    """The MODEL and CLIP patchers as ComfyUI's loader nodes build them."""
    if family == "flux":
        options = {} if dtype is None else {"dtype": dtype}
        model = comfy.sd.load_diffusion_model(str(DIR / "flux.safetensors"), model_options=options)
    else:
        model = comfy.sd.load_checkpoint_guess_config(
            str(DIR / "sd35.safetensors"), output_vae=False, output_clip=False
        )[0]
    # The text side is the full-size CLIP-L alone (ComfyUI's CLIP configs have fixed widths), loaded as
    # an SD3 CLIP with only CLIP-L present: LoRA keys lora_te1_ / lora_te_ / text_encoder. reach it.
    clip = comfy.sd.load_clip([str(DIR / "clip_l-random.safetensors")], clip_type=comfy.sd.CLIPType.SD3)
    return model, clip


def record(out, case, patcher, keys):
    # As a sampler or text encode loads it: under inference mode (its fp8 rounding needs that), through
    # the model manager, which swaps the base model's weights for this clone's patched ones.
    with torch.inference_mode():
        comfy.model_management.load_models_gpu([patcher], force_full_load=True)
    state = patcher.model.state_dict()
    for key in keys:
        if key not in state:
            continue
        w = state[key]
        out[f"{case}/{key}/rows"] = w[::STRIDE, :COLUMNS].float().contiguous()
        wide = w.double()
        out[f"{case}/{key}/stats"] = torch.stack([wide.sum(), (wide * wide).sum()])
    comfy.model_management.unload_all_models()


out = {}
for case, (family, dtype, loras, s_model, s_clip) in CASES.items():
    model, clip = load(family, dtype)
    for name in loras:
        lora = comfy.utils.load_torch_file(str(DIR / name), safe_load=True)
        model, clip = comfy.sd.load_lora_for_models(model, clip, lora, s_model, s_clip)
    record(out, case, model, FLUX_WATCH if family == "flux" else SD3_WATCH)
    record(out, case, clip.patcher, CLIP_WATCH)
save_file(out, str(HERE / "comfyui_lora_weights.safetensors"))
print(f"wrote {len(out)} tensors")
