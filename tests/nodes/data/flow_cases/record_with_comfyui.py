"""Records ComfyUI's latents for the cases in this folder (run by hand; tests never run it).

    python record_with_comfyui.py URL COMFY_OUTPUT_DIR CASE [CASE ...]

URL is a running ComfyUI 0.3.64 started with `--cpu` whose models folder holds the reduced-depth random
FLUX / SD3.5 files of the shared flow reference under their published names (diffusion_models/,
text_encoders/, checkpoints/). Each CASE folder's `workflow_api.json` is queued as it is, except that each
SaveLatent's `filename_prefix` (the key it records) is put under `flow_cases/CASE/`. The tensors the
SaveLatent nodes wrote are copied unchanged to `CASE/latent.safetensors`, one key per SaveLatent.
Queue the cases of a family in one server session: its cache then encodes the shared prompts once.
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


def record(url: str, output_dir: Path, case: str) -> None:
    """Queue one case, wait for it, copy what its SaveLatent nodes wrote."""
    prompt = json.loads((HERE / case / "workflow_api.json").read_text())
    keys = []
    for node in prompt.values():
        if node["class_type"] == "SaveLatent":
            keys.append(node["inputs"]["filename_prefix"])
            node["inputs"]["filename_prefix"] = f"flow_cases/{case}/{keys[-1]}"
    started = time.time()
    prompt_id = _post(f"{url}/prompt", {"prompt": prompt})["prompt_id"]
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
        files = sorted((output_dir / "flow_cases" / case).glob(f"{key}_*.latent"))
        tensors[key] = load_file(str(files[-1]))["latent_tensor"].contiguous()
    save_file(tensors, str(HERE / case / "latent.safetensors"))
    shapes = {k: tuple(v.shape) for k, v in tensors.items()}
    print(f"{case}: {shapes} std {tensors['latent'].std():.4f} in {time.time() - started:.0f} s", flush=True)


if __name__ == "__main__":
    for name in sys.argv[3:]:
        record(sys.argv[1], Path(sys.argv[2]), name)
