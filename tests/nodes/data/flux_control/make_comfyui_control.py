"""Regenerate comfyui_control.safetensors: ComfyUI 0.3.64's FLUX Canny/Depth forward, its control-image
input channels and its patched weights for a BFL control LoRA on FLUX dev, on tiny random files.

Needs a ComfyUI checkout, its Python and the tiny random files of make-checkpoint (seed 0):

    diffgraph make-checkpoint --arch flux1-dev --size tiny --seed 0 dev.safetensors
    diffgraph make-checkpoint --arch flux1-canny-dev --size tiny --seed 0 canny.safetensors
    diffgraph make-checkpoint --arch lora-flux-bfl-control --size tiny --seed 0 control.safetensors
    COMFYUI=path/to/ComfyUI path/to/comfy-venv/bin/python make_comfyui_control.py dev.safetensors \
        canny.safetensors control.safetensors

ComfyUI's FLUX class is built directly at the tiny size (../comfy_tiny_flux.py) with the files' tensors
as float32. The LoRA goes through ComfyUI's own key map for a FLUX model's
`diffusion_model.*` names, its BFL control-LoRA conversion and its weight patching (float32, as a CPU
run holds the model), at strengths 1 and 0.6. Stored: the inputs (`in.*`), the Canny velocity
(`canny`), the 16 channels ComfyUI's Flux model appends for a 32-channel model from an image latent of
another size and from nothing (`concat.*`), the velocity of the LoRA-patched dev model (`lora.forward`),
its patched img_in weight (`lora.img_in`), and the sha256 of every patched tensor's float32 bytes as
metadata (`sha256.<strength>.<key>`).
"""

import hashlib
import os
import sys
from pathlib import Path
from types import SimpleNamespace

DEV_FILE, CANNY_FILE, LORA_FILE = sys.argv[1], sys.argv[2], sys.argv[3]
sys.path.insert(0, os.environ["COMFYUI"])
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))
sys.argv = [sys.argv[0], "--cpu"]
import comfy.options  # noqa: E402

comfy.options.enable_args_parsing()

import comfy.latent_formats  # noqa: E402
import comfy.lora  # noqa: E402
import comfy.lora_convert  # noqa: E402
import comfy.model_base  # noqa: E402
import torch  # noqa: E402
from comfy_tiny_flux import tiny_flux  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

HERE = Path(__file__).resolve().parent


def patched(dev, lora, strength):
    """ComfyUI's patched tensors (float32) of the dev state for the LoRA at `strength`."""
    sd = {"diffusion_model." + k: v for k, v in dev.items()}
    fake = SimpleNamespace(state_dict=lambda: sd, model_config=SimpleNamespace(unet_config={}))
    key_map = comfy.lora.model_lora_keys_unet(fake, {})
    patches = comfy.lora.load_lora(comfy.lora_convert.convert_lora(lora), key_map)
    out = {}
    for key, patch in patches.items():
        weight = sd[key].clone()
        out[key] = comfy.lora.calculate_weight([(strength, patch, 1.0, None, None)], weight, key)
    return out


def digest(t):
    return hashlib.sha256(t.float().contiguous().numpy().tobytes()).hexdigest()


g = torch.Generator().manual_seed(11)
inputs = {
    "x": torch.randn(2, 32, 10, 12, generator=g),
    "sigma": torch.tensor([0.8, 0.3]),
    "context": torch.randn(2, 9, 128, generator=g) * 0.5,
    "pooled": torch.randn(2, 64, generator=g),
    "guidance": torch.tensor([3.5, 30.0]),
    "concat_image": torch.randn(1, 16, 5, 7, generator=g),
}
out = {f"in.{k}": v for k, v in inputs.items()}
args = (inputs["x"], inputs["sigma"], inputs["context"])
kw = {"y": inputs["pooled"], "guidance": inputs["guidance"]}
metadata = {}
with torch.no_grad():
    canny = tiny_flux({k: v.float() for k, v in load_file(CANNY_FILE).items()}, 32)
    out["canny"] = canny(*args, **kw).float()
    fake = SimpleNamespace(
        diffusion_model=canny,
        model_config=SimpleNamespace(unet_config={"in_channels": 32, "out_channels": 16}),
        process_latent_in=comfy.latent_formats.Flux().process_in,
    )
    noise = inputs["x"][:, :16]
    build = comfy.model_base.Flux.concat_cond
    out["concat.image"] = build(fake, noise=noise, device="cpu", concat_latent_image=inputs["concat_image"])
    out["concat.none"] = build(fake, noise=noise, device="cpu")
    dev = {k: v.float() for k, v in load_file(DEV_FILE).items()}
    lora = load_file(LORA_FILE)
    for strength in (1.0, 0.6):
        weights = patched(dev, lora, strength)
        metadata.update({f"sha256.{strength}.{k}": digest(v) for k, v in weights.items()})
        if strength == 1.0:
            state = {**dev, **{k.removeprefix("diffusion_model."): v for k, v in weights.items()}}
            out["lora.forward"] = tiny_flux(state, 32)(*args, **kw).float()
            out["lora.img_in"] = weights["diffusion_model.img_in.weight"]
save_file({k: v.contiguous() for k, v in out.items()}, str(HERE / "comfyui_control.safetensors"), metadata)
print(len(out), "tensors,", len(metadata), "digests")
