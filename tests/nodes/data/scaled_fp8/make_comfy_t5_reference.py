"""Record ComfyUI 0.3.64's T5-XXL hidden states for a tiny scaled-fp8 T5 file (ComfyUI's python, CPU).

    COMFYUI=<ComfyUI checkout> <ComfyUI venv>/bin/python make_comfy_t5_reference.py FILE OUT

FILE: `python -m diffgraph make-checkpoint --arch t5xxl --size tiny --seed 9 --scaled-fp8 FILE`. ComfyUI's
own T5XXLModel is built as its loaders build it for a scaled file (`t5xxl_scaled_fp8` model option,
weights held as the file's float16 with scaled fp8 Linear layers), its sizes set to the tiny file's
through the `t5xxl_model_config` option; the last hidden state for the token ids below is saved.
"""

import os
import sys

FILE, OUT = sys.argv[1], sys.argv[2]
sys.argv = [sys.argv[0], "--cpu"]
sys.path.insert(0, os.environ["COMFYUI"])
import comfy.options  # noqa: E402

comfy.options.enable_args_parsing()
import torch  # noqa: E402
from comfy.text_encoders.sd3_clip import T5XXLModel  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

sd = load_file(FILE)
blocks = len({k.split(".")[2] for k in sd if k.startswith("encoder.block.")})
config = {"d_model": 128, "d_ff": 256, "num_heads": 4, "d_kv": 32, "num_layers": blocks}
options = {"t5xxl_scaled_fp8": sd["scaled_fp8"].dtype, "t5xxl_model_config": config}
model = T5XXLModel(device="cpu", dtype=sd["encoder.final_layer_norm.weight"].dtype, model_options=options)
model.load_sd(sd)
ids = torch.tensor([[100, 200, 300, 4000, 5, 1]])
with torch.no_grad():
    hidden = model.transformer(ids, None, dtype=torch.float32)[0].float()
save_file({"ids": ids, "hidden": hidden.contiguous()}, OUT, metadata={"comfyui": "0.3.64", "device": "cpu"})
print(tuple(hidden.shape), float(hidden.norm()))
