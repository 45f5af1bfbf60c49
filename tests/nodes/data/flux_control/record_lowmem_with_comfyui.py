"""Records a FLUX control case's final latent by calling ComfyUI 0.3.64's own node classes in one process.

    COMFYUI=path/to/ComfyUI MODELS=models_dir path/to/comfy-venv/bin/python record_lowmem_with_comfyui.py CASE...

The same graph as CASE/workflow_api.json (DualCLIPLoader, two CLIPTextEncode, FluxGuidance, VAELoader,
LoadImage, InstructPixToPixConditioning, UNETLoader, optional LoraLoaderModelOnly, KSampler), with its
values read from that file, run node by node in ComfyUI's CPU mode: the text encoders are dropped once
the prompts are encoded and the diffusion model is loaded afterwards, instead of a server holding
T5-XXL and the float32 FLUX model at once (two such server runs were killed for memory on a shared
23 GB machine; this one peaked at 10.3 GB RSS for both cases). Each node function is ComfyUI's; nothing
else differs from what ../reference_cases/record_with_comfyui.py records. The final latent (KSampler's raw VAE-space
samples, as SaveLatent stores them) goes to CASE/latent.safetensors under `latent`. MODELS holds
diffusion_models/, text_encoders/, vae/, loras/; input/ beside this script is the input folder.
"""

import gc
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CASES = sys.argv[1:]
sys.path.insert(0, os.environ["COMFYUI"])
sys.argv = [sys.argv[0], "--cpu"]
import comfy.options  # noqa: E402

comfy.options.enable_args_parsing()

import comfy.model_management as mm  # noqa: E402
import folder_paths  # noqa: E402
from comfy_extras.nodes_flux import FluxGuidance  # noqa: E402
from comfy_extras.nodes_ip2p import InstructPixToPixConditioning  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

import nodes  # noqa: E402

models = Path(os.environ["MODELS"])
for kind in ("diffusion_models", "text_encoders", "vae", "loras"):
    folder_paths.add_model_folder_path(kind, str(models / kind))
folder_paths.set_input_directory(str(HERE / "input"))


def record(case: str) -> None:
    """Run one case's graph with ComfyUI's nodes and store its final latent."""
    started = time.time()
    prompt = json.loads((HERE / case / "workflow_api.json").read_text())
    by_type = {node["class_type"]: node["inputs"] for node in prompt.values()}
    texts = [n["inputs"]["text"] for _, n in sorted(prompt.items()) if n["class_type"] == "CLIPTextEncode"]
    clip_in = by_type["DualCLIPLoader"]
    clip = nodes.DualCLIPLoader().load_clip(
        clip_in["clip_name1"], clip_in["clip_name2"], clip_in["type"], clip_in["device"]
    )[0]
    # Node 5 is the positive prompt, node 6 the (empty) negative one.
    positive, negative = (nodes.CLIPTextEncode().encode(clip, text)[0] for text in texts)
    del clip
    gc.collect()
    mm.unload_all_models()
    mm.cleanup_models()
    positive = FluxGuidance.execute(positive, by_type["FluxGuidance"]["guidance"]).result[0]
    vae = nodes.VAELoader().load_vae(by_type["VAELoader"]["vae_name"])[0]
    image = nodes.LoadImage().load_image(by_type["LoadImage"]["image"])[0]
    positive, negative, latent = InstructPixToPixConditioning.execute(positive, negative, image, vae).result
    del vae
    unet = by_type["UNETLoader"]
    model = nodes.UNETLoader().load_unet(unet["unet_name"], unet["weight_dtype"])[0]
    if "LoraLoaderModelOnly" in by_type:
        lora = by_type["LoraLoaderModelOnly"]
        model = nodes.LoraLoaderModelOnly().load_lora_model_only(
            model, lora["lora_name"], lora["strength_model"]
        )[0]
    k = by_type["KSampler"]
    out = nodes.KSampler().sample(
        model,
        k["seed"],
        k["steps"],
        k["cfg"],
        k["sampler_name"],
        k["scheduler"],
        positive,
        negative,
        latent,
        denoise=k["denoise"],
    )[0]
    samples = out["samples"].contiguous()
    save_file({"latent": samples}, str(HERE / case / "latent.safetensors"))
    print(
        f"{case}: {tuple(samples.shape)} std {samples.std():.4f} in {time.time() - started:.0f} s", flush=True
    )
    del model
    gc.collect()
    mm.unload_all_models()


for name in CASES:
    record(name)
