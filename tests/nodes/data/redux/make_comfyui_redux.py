"""Record ComfyUI 0.3.64's FLUX Redux tokens for a small random Redux file (run with ComfyUI's own Python).

    cd COMFYUI && VENV/bin/python DIFFGRAPH/tests/nodes/data/redux/make_comfyui_redux.py OUT_DIR

Writes OUT_DIR/redux_tiny.safetensors (the random Redux weights: redux_up 24x16, redux_down 8x24 (the published file's 3x hidden ratio), fp16,
seed 7) and OUT_DIR/redux_reference.safetensors ("hidden": seeded SigLIP-like states [2, 9, 16],
"tokens": what ComfyUI's StyleModel.get_cond returns for them). ComfyUI loads the file through
comfy.sd.load_style_model, whose Redux encoder has fixed published sizes, so the encoder is rebuilt here
with the small sizes and fed the file's weights through its own load_state_dict.
"""

import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

out = Path(sys.argv[1])
sys.argv = [sys.argv[0], "--cpu"]  # ComfyUI reads its command line when imported
sys.path.insert(0, ".")
import comfy.options  # noqa: E402

comfy.options.enable_args_parsing()

import comfy.ldm.flux.redux  # noqa: E402
import comfy.sd  # noqa: E402

gen = torch.Generator().manual_seed(7)
weights = {
    "redux_up.weight": (torch.randn(24, 16, generator=gen) * 0.2).half(),
    "redux_up.bias": (torch.randn(24, generator=gen) * 0.1).half(),
    "redux_down.weight": (torch.randn(8, 24, generator=gen) * 0.2).half(),
    "redux_down.bias": (torch.randn(8, generator=gen) * 0.1).half(),
}
save_file(weights, str(out / "redux_tiny.safetensors"))
encoder = comfy.ldm.flux.redux.ReduxImageEncoder(redux_dim=16, txt_in_features=8)
encoder.load_state_dict(weights)
style = comfy.sd.StyleModel(encoder)
hidden = torch.randn(2, 9, 16, generator=torch.Generator().manual_seed(3))


class Vision:
    last_hidden_state = hidden


with torch.inference_mode():
    tokens = style.get_cond(Vision())
save_file({"hidden": hidden, "tokens": tokens.float().contiguous()}, str(out / "redux_reference.safetensors"))
print(tokens.shape, tokens.dtype)
