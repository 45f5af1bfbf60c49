"""Bench: peak RSS per stage of a FLUX dev text-to-image run, and what the model store holds after each stage.

    python bench/memory_flow.py --models-dir MODELS --out bench/results/memory_flux_dev.json
        [--ram-budget-gb 12] [--size 256] [--steps 2] [--unet FILE] [--weight-dtype default]
        [--clip-l FILE] [--t5 FILE] [--vae FILE]

MODELS (or $DIFFGRAPH_FLOW_MODELS) is a ComfyUI-style models folder; the default file names are the
reduced-depth full-width reference files. The run is the ordinary workflow (UNETLoader,
DualCLIPLoader, CLIPTextEncode, FluxGuidance, KSampler euler/simple cfg 1, VAELoader, VAEDecode)
through the executor; each node is one stage. At every stage start the kernel's peak-RSS mark
(VmHWM) is reset to the current RSS, so a stage's peak is its own. `--ram-budget-gb` sets the model
store's RAM budget (default: half of physical memory, the server's default), which decides whether
T5 is dropped once the prompt is encoded.

Peak RSS includes the file pages mapped while a safetensors file is read; the reader unmaps them every
64 MB as it copies tensors out, so a load adds little above the weights it keeps. Each stage also
reports the anonymous and file-backed parts of RSS at its end, and `store_mb` is what the model store
itself holds (parameters and buffers).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine import Environment, ModelPaths  # noqa: E402
from engine.devices import DevicePolicy  # noqa: E402
from engine.events import Event, Executing  # noqa: E402
from engine.executor import Executor  # noqa: E402
from engine.model_store import ModelStore  # noqa: E402
from nodes.pack import build_registry  # noqa: E402

STAGES = {
    "1": "load diffusion model",
    "2": "load text encoders",
    "3": "encode prompt (T5 released after)",
    "4": "flux guidance",
    "5": "empty latent",
    "6": "zero-out negative",
    "7": "sampling",
    "8": "load vae",
    "9": "vae decode",
}


def flux_prompt(args: argparse.Namespace) -> dict[str, Any]:
    """The FLUX dev text-to-image prompt the stages follow."""
    return {
        "1": {
            "class_type": "UNETLoader",
            "inputs": {"unet_name": args.unet, "weight_dtype": args.weight_dtype},
        },
        "2": {
            "class_type": "DualCLIPLoader",
            "inputs": {"clip_name1": args.clip_l, "clip_name2": args.t5, "type": "flux"},
        },
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat on a windowsill", "clip": ["2", 0]}},
        "4": {"class_type": "FluxGuidance", "inputs": {"conditioning": ["3", 0], "guidance": 3.5}},
        "5": {
            "class_type": "EmptySD3LatentImage",
            "inputs": {"width": args.size, "height": args.size, "batch_size": 1},
        },
        "6": {"class_type": "ConditioningZeroOut", "inputs": {"conditioning": ["3", 0]}},
        "7": {
            "class_type": "KSampler",
            "inputs": {
                "model": ["1", 0],
                "seed": 42,
                "steps": args.steps,
                "cfg": 1.0,
                "sampler_name": "euler",
                "scheduler": "simple",
                "denoise": 1.0,
                "positive": ["4", 0],
                "negative": ["6", 0],
                "latent_image": ["5", 0],
            },
        },
        "8": {"class_type": "VAELoader", "inputs": {"vae_name": args.vae}},
        "9": {"class_type": "VAEDecode", "inputs": {"samples": ["7", 0], "vae": ["8", 0]}},
    }


def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return float(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def _held(store: ModelStore, names: dict[str, str]) -> list[str]:
    """Short labels of what the store holds (the file name a key mentions, else the key's kind)."""
    out = []
    for key in store.keys():  # noqa: SIM118 - the store is not iterable
        text = repr(key)
        out.append(next((label for name, label in names.items() if name in text), text[:60]))
    return out


class StageRecorder:
    """An event sink closing one stage and opening the next at every node start."""

    def __init__(self, store: ModelStore, names: dict[str, str]):
        self.store, self.names = store, names
        self.stages: list[dict[str, Any]] = []
        self._open: tuple[str, float] | None = None

    def __call__(self, event: Event) -> None:
        """Close the running stage when the next node starts."""
        if isinstance(event, Executing) and event.node is not None:
            self.close()
            Path("/proc/self/clear_refs").write_text("5")
            self._open = (event.node, time.perf_counter())

    def close(self) -> None:
        """Record the open stage: peak and current RSS, seconds, and what the store holds."""
        if self._open is None:
            return
        node, start = self._open
        gc.collect()
        self.stages.append(
            {
                "stage": STAGES.get(node, node),
                "seconds": time.perf_counter() - start,
                "peak_rss_mb": _status_mb("VmHWM"),
                "rss_after_mb": _status_mb("VmRSS"),
                # Heap (anonymous) versus file pages still mapped from safetensors reads, which the
                # kernel can drop under pressure: RSS counts both.
                "rss_anon_after_mb": _status_mb("RssAnon"),
                "rss_file_after_mb": _status_mb("RssFile"),
                "store_mb": self.store.usage()["ram_bytes"] / 2**20,
                "store_holds": _held(self.store, self.names),
            }
        )
        # Each stage as it closes, so a run the kernel kills still shows how far it got.
        print(json.dumps(self.stages[-1]), file=sys.stderr, flush=True)
        self._open = None


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the prompt with the stage recorder; the JSON-ready result."""
    models = Path(args.models_dir or os.environ.get("DIFFGRAPH_FLOW_MODELS") or "")
    if not models.is_dir():
        raise SystemExit("--models-dir (or $DIFFGRAPH_FLOW_MODELS) must name a models folder")
    budget = int(args.ram_budget_gb * 2**30) if args.ram_budget_gb else None
    store = ModelStore(DevicePolicy.from_env(device="cpu"), ram_budget=budget)
    names = {args.unet: "diffusion model", args.t5: "t5xxl", args.clip_l: "clip_l", args.vae: "vae"}
    recorder = StageRecorder(store, names)
    paths = ModelPaths(models)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        env = Environment(work / "out", work / "tmp", work, models=store, model_paths=paths)
        executor = Executor(build_registry(paths, work), env)
        start_rss = _status_mb("VmRSS")
        result = executor.execute(flux_prompt(args), prompt_id="memory", outputs=["9"], sink=recorder)
        recorder.close()
    if result.status != "success":
        raise SystemExit(f"run failed: {result.error and result.error.data()}")
    files = {role: (models / folder / name).stat().st_size for role, folder, name in _files(args)}
    return {
        "ram_budget_mb": store.ram_budget / 2**20,
        "file_bytes": files,
        "size": args.size,
        "steps": args.steps,
        "weight_dtype": args.weight_dtype,
        "rss_before_run_mb": start_rss,
        "stages": recorder.stages,
        "peak_rss_mb": max(s["peak_rss_mb"] for s in recorder.stages),
        "store_loads": store.loads,
        "torch": torch.__version__,
        "machine": platform.machine(),
    }


def _files(args: argparse.Namespace) -> list[tuple[str, str, str]]:
    return [
        ("diffusion_model", "diffusion_models", args.unet),
        ("clip_l", "text_encoders", args.clip_l),
        ("t5xxl", "text_encoders", args.t5),
        ("vae", "vae", args.vae),
    ]


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, run, write the JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--models-dir", type=Path)
    ap.add_argument("--ram-budget-gb", type=float, default=None, help="model store RAM budget (GiB)")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--unet", default="flux1-dev-random-d2s2.safetensors")
    ap.add_argument("--weight-dtype", default="default")
    ap.add_argument("--clip-l", default="clip_l-random.safetensors")
    ap.add_argument("--t5", default="t5xxl-random_fp8_e4m3fn.safetensors")
    ap.add_argument("--vae", default="flux-ae-random.safetensors")
    args = ap.parse_args(argv)
    result = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
