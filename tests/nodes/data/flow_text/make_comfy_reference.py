"""Record ComfyUI's FLUX/SD3 conditioning for the reference text encoder files (run with ComfyUI's python).

Usage (from any directory but ComfyUI's own, so its `tests` package does not shadow anything):
    COMFYUI=<ComfyUI checkout> <ComfyUI venv>/bin/python make_comfy_reference.py MODELS_DIR OUT T5_FILE [BLOCKS]
MODELS_DIR/text_encoders holds clip_l-random.safetensors, clip_g-random.safetensors and T5_FILE (the
published reduced random files; `diffgraph make-checkpoint --arch clip_l|clip_g|t5xxl --size full
--seed 1234` rebuilds them, T5 with --dtype fp8_e4m3fn). With BLOCKS, T5_FILE holds only the first
BLOCKS T5 blocks and ComfyUI's T5 is built that deep (its `t5xxl_model_config` model option).
ComfyUI runs on the CPU (`--cpu`), loading the files with comfy.sd.load_clip as its loader nodes do.
Each case stores slices of the conditioning (see `summary`), not the whole tensor.
"""

import os
import sys

ARGS = sys.argv[1:]
sys.argv = [sys.argv[0], "--cpu"]
sys.path.insert(0, os.environ["COMFYUI"])
import comfy.options  # noqa: E402

comfy.options.enable_args_parsing()
import comfy.sd  # noqa: E402
import torch  # noqa: E402
from cases import CASES, summary  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

models, out, t5_file = ARGS[0], ARGS[1], ARGS[2]
options = {"t5xxl_model_config": {"num_layers": int(ARGS[3])}} if len(ARGS) > 3 else {}
te = os.path.join(models, "text_encoders")
FILES = {
    "flux": (["clip_l-random.safetensors", t5_file], comfy.sd.CLIPType.FLUX),
    "sd3": (["clip_l-random.safetensors", "clip_g-random.safetensors", t5_file], comfy.sd.CLIPType.SD3),
}


def encode(clip, case):
    """ComfyUI's node logic for the case's node (CLIPTextEncode, CLIPTextEncodeFlux, CLIPTextEncodeSD3)."""
    if case["node"] == "CLIPTextEncode":
        tokens = clip.tokenize(case["text"])
    elif case["node"] == "CLIPTextEncodeSD3":
        from comfy_extras.nodes_sd3 import CLIPTextEncodeSD3

        args = case["sd3"]
        res = CLIPTextEncodeSD3.execute(
            clip, args["clip_l"], args["clip_g"], args["t5xxl"], args["empty_padding"]
        )
        cond = res.result[0] if hasattr(res, "result") else res[0]
        return cond[0][0], cond[0][1]["pooled_output"]
    cond = clip.encode_from_tokens_scheduled(tokens)
    return cond[0][0], cond[0][1]["pooled_output"]


tensors = {}
for family, (names, clip_type) in FILES.items():
    clip = comfy.sd.load_clip(
        [os.path.join(te, n) for n in names], clip_type=clip_type, model_options=options
    )
    for name, case in CASES.items():
        if case["family"] != family:
            continue
        with torch.no_grad():
            embeds, pooled = encode(clip, case)
        tensors.update(summary(name, embeds.float(), pooled.float()))
        print(name, tuple(embeds.shape), tuple(pooled.shape), flush=True)
    del clip
save_file(tensors, out, metadata={"comfyui": "0.3.64", "device": "cpu"})
