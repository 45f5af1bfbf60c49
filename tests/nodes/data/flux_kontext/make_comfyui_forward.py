"""Regenerate comfyui_forward.safetensors: ComfyUI 0.3.64's FLUX forward with Kontext references and Fill.

Needs a ComfyUI checkout, its Python and the tiny random files of make-checkpoint (seed 0):

    diffgraph make-checkpoint --arch flux1-dev --size tiny --seed 0 dev.safetensors
    diffgraph make-checkpoint --arch flux1-fill-dev --size tiny --seed 0 fill.safetensors
    COMFYUI=path/to/ComfyUI path/to/comfy-venv/bin/python make_comfyui_forward.py dev.safetensors fill.safetensors

ComfyUI's file detection assumes FLUX's full width, so its model class (comfy.ldm.flux.model.Flux) is
built directly with the tiny sizes (../comfy_tiny_flux.py) and the file's tensors loaded into it as
float32.

Inputs are drawn here from a seeded CPU generator and saved beside the outputs (`in.*`), so the test
feeds our model exactly the same tensors. Outputs: `dev.<method>` for the dev model with two reference
latents of odd, different sizes under each reference method, `dev.none` without references, and
`fill` for the Fill model on a 96-channel input; `concat.*` the 80 channels ComfyUI's Flux model
appends for Fill (masked-image latent and packed mask) from an image latent and a pixel mask at half
size, from a prepared noise mask alone, and from nothing. All in float32 on CPU.
"""

import os
import sys
from pathlib import Path
from types import SimpleNamespace

DEV_FILE, FILL_FILE = sys.argv[1], sys.argv[2]
sys.path.insert(0, os.environ["COMFYUI"])
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))
sys.argv = [sys.argv[0], "--cpu"]
import comfy.options  # noqa: E402

comfy.options.enable_args_parsing()

import comfy.latent_formats  # noqa: E402
import comfy.model_base  # noqa: E402
import comfy_tiny_flux  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

HERE = Path(__file__).resolve().parent


def tiny_flux(path, in_channels):
    """ComfyUI's FLUX model class at the tiny size with the file's weights (float32)."""
    return comfy_tiny_flux.tiny_flux(load_file(path), in_channels)


g = torch.Generator().manual_seed(7)
inputs = {
    "x": torch.randn(2, 16, 10, 12, generator=g),
    "fill_x": torch.randn(2, 96, 10, 12, generator=g),
    "ref0": torch.randn(2, 16, 9, 14, generator=g),
    "ref1": torch.randn(2, 16, 13, 7, generator=g),
    "sigma": torch.tensor([0.8, 0.3]),
    "context": torch.randn(2, 9, 128, generator=g) * 0.5,
    "pooled": torch.randn(2, 64, generator=g),
    "guidance": torch.tensor([3.5, 2.5]),
}
out = {f"in.{k}": v for k, v in inputs.items()}
args = (inputs["sigma"], inputs["context"])
kw = {"y": inputs["pooled"], "guidance": inputs["guidance"]}
with torch.no_grad():
    dev = tiny_flux(DEV_FILE, 16)
    out["dev.none"] = dev(inputs["x"], *args, **kw).float()
    for method in ("offset", "index", "uxo"):
        refs = [inputs["ref0"], inputs["ref1"]]
        out[f"dev.{method}"] = dev(
            inputs["x"], *args, ref_latents=refs, ref_latents_method=method, **kw
        ).float()
    fill = tiny_flux(FILL_FILE, 96)
    out["fill"] = fill(inputs["fill_x"], *args, **kw).float()

# Fill's extra input as ComfyUI's Flux.concat_cond builds it, on a stand-in for the model object.
fake = SimpleNamespace(
    diffusion_model=fill,
    model_config=SimpleNamespace(unet_config={"in_channels": 96, "out_channels": 16}),
    process_latent_in=comfy.latent_formats.Flux().process_in,
)
concat = dict(
    image=torch.randn(1, 16, 10, 12, generator=g),
    mask=torch.rand(1, 1, 40, 48, generator=g),
    denoise_mask=torch.rand(2, 16, 10, 12, generator=g),
)
out.update({f"in.concat_{k}": v for k, v in concat.items()})
noise = inputs["x"]
build = comfy.model_base.Flux.concat_cond
out["concat.image_mask"] = build(
    fake, noise=noise, device="cpu", concat_latent_image=concat["image"], concat_mask=concat["mask"]
)
out["concat.denoise_mask"] = build(fake, noise=noise, device="cpu", denoise_mask=concat["denoise_mask"])
out["concat.none"] = build(fake, noise=noise, device="cpu")
save_file({k: v.contiguous() for k, v in out.items()}, str(HERE / "comfyui_forward.safetensors"))
