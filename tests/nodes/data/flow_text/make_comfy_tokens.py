"""Record ComfyUI 0.3.64's tokens and weights for FLUX/SD3 prompts (run with ComfyUI's python).

Usage: COMFYUI=<ComfyUI checkout> <ComfyUI venv>/bin/python make_comfy_tokens.py OUT.json
(from a directory other than ComfyUI's). Tokenizers: CLIP-L (SD1 tokenizer), CLIP-G (SDXL's), T5-XXL
with FLUX's 256-token and SD3's 77-token minimum length.
"""

import json
import os
import sys

out_path = sys.argv[1]
sys.argv = [sys.argv[0], "--cpu"]
sys.path.insert(0, os.environ["COMFYUI"])
import comfy.options  # noqa: E402

comfy.options.enable_args_parsing()
from cases import PROMPTS  # noqa: E402
from comfy import sd1_clip, sdxl_clip  # noqa: E402
from comfy.text_encoders import flux, sd3_clip  # noqa: E402

toks = {
    "clip_l": sd1_clip.SDTokenizer(),
    "clip_g": sdxl_clip.SDXLClipGTokenizer(),
    "t5_flux": flux.T5XXLTokenizer(),
    "t5_sd3": sd3_clip.T5XXLTokenizer(),
}
out = {k: [t.tokenize_with_weights(p) for p in PROMPTS] for k, t in toks.items()}
with open(out_path, "w") as f:
    json.dump({"prompts": PROMPTS, "tokens": out}, f)
