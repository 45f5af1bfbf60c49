"""Records ComfyUI's final latents for the cases in this folder (run by hand; tests never run it).

    python record_with_comfyui.py URL COMFY_OUTPUT_DIR CASE [CASE ...]

A CASE is a folder name here, or the path of a case folder elsewhere (the model-patch cases in
`../model_patches/` are recorded the same way).

URL is a running ComfyUI 0.3.64 started with `--cpu` whose models folder holds
`checkpoints/sd15-random.safetensors` (the shared full-size random SD1.5 file), this folder's
`embeddings/` and (for the ControlNet cases) the shared reference's two random SD1.5 ControlNets in
`controlnet/`, and whose input folder holds this folder's `input/` files. Each case's
`workflow_api.json` is queued, and the latent its SaveLatent node wrote is copied, tensor unchanged,
to `CASE/latent.safetensors` under the key `latent` (a workflow with several SaveLatent nodes keeps each
under its own `filename_prefix`). The FLUX / SD3.5 cases in `../flow_cases/`, `../flow_lora/` and
`../flux_kontext/` are recorded the same way, with the reduced flow reference files in the models folder;
`../uso/uso_d2s2` also needs the random SigLIP and USO projector files in `clip_vision/` and
`model_patches/` (ComfyUI's extra model paths must name `model_patches`) and `../uso/input/` as input.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.request
from pathlib import Path

from safetensors.torch import load_file, save_file

HERE = Path(__file__).resolve().parent


def _post(url: str, body: dict) -> dict:
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(req) as resp:
        return json.loads(resp.read())


def _get(url: str) -> dict:
    with urllib.request.urlopen(url) as resp:
        return json.loads(resp.read())


def record(url: str, output_dir: Path, case_arg: str) -> None:
    """Queue one case, wait for it, copy what its SaveLatent nodes wrote."""
    folder = Path(case_arg) if Path(case_arg).is_dir() else HERE / case_arg
    case = folder.name
    prompt = json.loads((folder / "workflow_api.json").read_text())
    savers = [node for node in prompt.values() if node["class_type"] == "SaveLatent"]
    # One SaveLatent is stored as "latent"; several keep their own prefixes as keys.
    keys = ["latent"] if len(savers) == 1 else [node["inputs"]["filename_prefix"] for node in savers]
    for node, key in zip(savers, keys, strict=True):
        node["inputs"]["filename_prefix"] = f"ref/{case}/{key}"
    prompt_id = _post(f"{url}/prompt", {"prompt": prompt})["prompt_id"]
    started = time.time()
    while True:
        history = _get(f"{url}/history/{prompt_id}")
        if prompt_id in history:
            status = history[prompt_id]["status"]
            if status.get("status_str") != "success":
                raise SystemExit(f"{case}: {json.dumps(status)[:2000]}")
            break
        time.sleep(2)
    tensors = {}
    for key in keys:
        files = sorted((output_dir / "ref" / case).glob(f"{key}_*.latent"))
        tensors[key] = load_file(str(files[-1]))["latent_tensor"].contiguous()
    save_file(tensors, str(folder / "latent.safetensors"))
    shapes = {k: tuple(v.shape) for k, v in tensors.items()}
    stds = {k: round(float(v.std()), 4) for k, v in tensors.items()}
    print(f"{case}: {shapes} std {stds} in {time.time() - started:.0f} s", flush=True)


if __name__ == "__main__":
    for name in sys.argv[3:]:
        record(sys.argv[1], Path(sys.argv[2]), name)
