"""Bench: load time of a full-size SD1.5 single file, diffgraph's loader vs diffusers' from_single_file.

    python bench/load_checkpoint.py --out bench/results/load_checkpoint.json [--ckpt PATH] [--rounds 3]

Without --ckpt the random reference file is generated with ../shared/reference/make_random_checkpoint.py
(cached under $DIFFGRAPH_TEST_CACHE or /tmp). Both loaders run offline on CPU in fp32, alternating,
with diffusers given a local config folder (written from diffgraph's shipped configs) so it never
goes online.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.devices import DevicePolicy  # noqa: E402
from engine.model_store import ModelStore  # noqa: E402
from nodes.diffusion import families, loader  # noqa: E402
from nodes.diffusion.checkpoint_io import read_header  # noqa: E402
from nodes.diffusion.tokenizer import clip_tokenizer  # noqa: E402

SCRIPT = Path(__file__).resolve().parents[2] / "shared" / "reference" / "make_random_checkpoint.py"


def reference_checkpoint() -> Path:
    """The random SD1.5 reference file, generated once."""
    base = Path(os.environ.get("DIFFGRAPH_TEST_CACHE") or tempfile.gettempdir()) / "checkpoints"
    path = base / "sd15-random.safetensors"
    if not path.is_file() or path.stat().st_size != 2132651014:
        base.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, str(SCRIPT), "--out", str(path)], check=True)
    return path


def diffusers_config_dir(ckpt: Path, out: Path) -> Path:
    """A diffusers pipeline folder (configs and tokenizer only) matching the checkpoint."""
    header, _ = read_header(ckpt)
    meta = {k: torch.empty(v["shape"], device="meta") for k, v in header.items() if k != "__metadata__"}
    fam = families.family_config("sd15")
    unet = families.unet_config("sd15", meta)
    text = dict(
        families.text_config(fam["text_encoders"][0], meta),
        architectures=["CLIPTextModel"],
        model_type="clip_text_model",
    )
    parts = {
        "unet": unet,
        "vae": families.vae_config("sd15", meta),
        "text_encoder": text,
        "scheduler": {"_class_name": "PNDMScheduler", **fam["scheduler"], "skip_prk_steps": True},
    }
    for name, cfg in parts.items():
        (out / name).mkdir(parents=True, exist_ok=True)
        fname = "scheduler_config.json" if name == "scheduler" else "config.json"
        (out / name / fname).write_text(json.dumps(cfg))
    (out / "tokenizer").mkdir(exist_ok=True)
    clip_tokenizer().model.save(str(out / "tokenizer"))
    (out / "tokenizer" / "tokenizer_config.json").write_text(
        json.dumps({"model_max_length": 77, "tokenizer_class": "CLIPTokenizer"})
    )
    (out / "tokenizer" / "special_tokens_map.json").write_text(
        json.dumps(
            {
                "bos_token": "<|startoftext|>",
                "eos_token": "<|endoftext|>",
                "unk_token": "<|endoftext|>",
                "pad_token": "<|endoftext|>",
            }
        )
    )
    index = {
        "_class_name": "StableDiffusionPipeline",
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "scheduler": ["diffusers", "PNDMScheduler"],
        "safety_checker": [None, None],
        "feature_extractor": [None, None],
    }
    (out / "model_index.json").write_text(json.dumps(index))
    return out


def time_diffgraph(ckpt: Path) -> float:
    """Seconds for a cold load of all three components into a fresh store."""
    store = ModelStore(DevicePolicy.from_env(device="cpu"))
    t0 = time.perf_counter()
    loader.load_checkpoint_into(store, ckpt)
    elapsed = time.perf_counter() - t0
    store.unload_all()
    return elapsed


def time_diffusers(ckpt: Path, config_dir: Path) -> float:
    """Seconds for StableDiffusionPipeline.from_single_file with the local config folder."""
    from diffusers import StableDiffusionPipeline

    t0 = time.perf_counter()
    pipe = StableDiffusionPipeline.from_single_file(
        str(ckpt),
        config=str(config_dir),
        local_files_only=True,
        safety_checker=None,
        requires_safety_checker=False,
    )
    elapsed = time.perf_counter() - t0
    del pipe
    return elapsed


def main() -> int:
    """Run both loaders alternately and write the timings as JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--ckpt")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    ckpt = Path(args.ckpt) if args.ckpt else reference_checkpoint()
    with tempfile.TemporaryDirectory() as tmp:
        config_dir = diffusers_config_dir(ckpt, Path(tmp))
        rows = []
        for i in range(args.rounds):
            for name, fn in (
                ("diffgraph", lambda: time_diffgraph(ckpt)),
                ("diffusers", lambda: time_diffusers(ckpt, config_dir)),
            ):
                gc.collect()
                seconds = fn()
                rows.append({"round": i, "loader": name, "seconds": round(seconds, 3)})
                print(f"round {i} {name:10s} {seconds:7.2f} s", flush=True)
    summary = {}
    for name in ("diffgraph", "diffusers"):
        times = [r["seconds"] for r in rows if r["loader"] == name]
        summary[name] = {"median_s": round(statistics.median(times), 3), "min_s": min(times)}
    result = {
        "checkpoint": str(ckpt),
        "bytes": ckpt.stat().st_size,
        "device": "cpu",
        "dtype": "fp32",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "rows": rows,
        "summary": summary,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
