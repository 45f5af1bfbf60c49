"""Records ComfyUI's T2I-Adapter features for the tiny adapters diffgraph generates (run by hand; tests never run it).

    diffgraph make-checkpoint --arch sd15 --kind t2i-adapter --seed 0 DIR/t2i-sd15.safetensors
    diffgraph make-checkpoint --arch sdxl --kind t2i-adapter --seed 0 DIR/t2i-sdxl.safetensors
    COMFYUI_VENV_PYTHON record_with_comfyui.py COMFYUI_DIR DIR

Builds each file into ComfyUI 0.3.64's own Adapter class (comfy.t2i_adapter.adapter, constructed as its
load_t2i_adapter does: nums_rb 2, sk, no conv downsampling, XL when the unshuffled input has 256
channels), feeds it a seeded [1, 1, 64, 64] hint (torch.manual_seed(0); torch.rand) and writes
`comfyui_t2i_features.safetensors` beside this file: `<arch>.hint` and `<arch>.<slot><i>`, ComfyUI's
output lists ("input" in the reversed order its UNet pops them, "middle" for SDXL) without the empty slots.
"""

import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

sys.path.insert(0, sys.argv[1])
from comfy.t2i_adapter.adapter import Adapter  # noqa: E402

out = {}
for arch in ("sd15", "sdxl"):
    sd = {k: v.float() for k, v in load_file(str(Path(sys.argv[2]) / f"t2i-{arch}.safetensors")).items()}
    cin, width = sd["conv_in.weight"].shape[1], sd["conv_in.weight"].shape[0]
    ksize = sd["body.0.block2.weight"].shape[2]
    channels = [width, width * 2, width * 4, width * 4]
    model = Adapter(
        cin=cin, channels=channels, nums_rb=2, ksize=ksize, sk=True, use_conv=False, xl=cin in (256, 768)
    )
    model.load_state_dict(sd)
    torch.manual_seed(0)
    hint = torch.rand(1, 1, 64, 64)
    out[f"{arch}.hint"] = hint
    for slot, items in model(hint).items():
        for i, t in enumerate(items):
            if t is not None:
                out[f"{arch}.{slot}{i}"] = t.detach().contiguous()
save_file(out, str(Path(__file__).resolve().parent / "comfyui_t2i_features.safetensors"))
print(sorted(out))
