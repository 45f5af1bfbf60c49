"""Bench: load time of a full-size SD1.5 single file, diffgraph's loader vs diffusers' from_single_file.

    python bench/load_checkpoint.py --out bench/results/load_checkpoint.json [--ckpt PATH] [--rounds 3]

Without --ckpt the random reference file is generated with ../shared/reference/make_random_checkpoint.py
(cached under $DIFFGRAPH_TEST_CACHE or /tmp). Both loaders run offline on CPU in fp32, each load in a
fresh interpreter (so neither reuses memory the other freed), alternating in ABBA order after one
uncounted load that warms the page cache; diffusers gets a local config folder (written from
diffgraph's shipped configs) so it never goes online. Reports median/min seconds and peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
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
    fam = families.family_spec("sd15")
    unet = families.unet_config("sd15", meta)
    text = dict(
        families.text_config(fam.text_encoders[0], meta),
        architectures=["CLIPTextModel"],
        model_type="clip_text_model",
    )
    parts = {
        "unet": unet,
        "vae": families.vae_config("sd15", meta),
        "text_encoder": text,
        "scheduler": {"_class_name": "PNDMScheduler", **fam.scheduler, "skip_prk_steps": True},
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


def time_diffgraph(ckpt: Path) -> tuple[float, str]:
    """Seconds for a cold load of all three components into a fresh store, and the UNet dtype."""
    store = ModelStore(DevicePolicy.from_env(device="cpu"))
    t0 = time.perf_counter()
    _, recipes = loader.load_checkpoint_into(store, ckpt)
    elapsed = time.perf_counter() - t0
    unet = loader.load_component_into(store, recipes["unet"])
    return elapsed, str(next(unet.parameters()).dtype)


def time_diffusers(ckpt: Path, config_dir: Path) -> tuple[float, str]:
    """Seconds for StableDiffusionPipeline.from_single_file with the local config folder, and the UNet dtype."""
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
    return elapsed, str(pipe.unet.dtype)


def child(name: str, ckpt: Path, config_dir: Path) -> int:
    """One load in this (fresh) process; prints seconds, dtype and peak RSS as one JSON line."""
    seconds, dtype = time_diffgraph(ckpt) if name == "diffgraph" else time_diffusers(ckpt, config_dir)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"seconds": round(seconds, 3), "dtype": dtype, "peak_rss_bytes": peak}))
    return 0


def run_child(name: str, ckpt: Path, config_dir: Path) -> dict:
    """Run one load in a fresh interpreter, so neither loader reuses memory the other freed."""
    cmd = [sys.executable, __file__, "--child", name, "--ckpt", str(ckpt), "--config-dir", str(config_dir)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def summarize(rows: list[dict]) -> dict:
    """Per loader: median and min seconds, peak RSS and the dtype the UNet ended in."""
    summary = {}
    for name in ("diffgraph", "diffusers"):
        mine = [r for r in rows if r["loader"] == name]
        times = [r["seconds"] for r in mine]
        summary[name] = {
            "median_s": round(statistics.median(times), 3),
            "min_s": min(times),
            "peak_rss_mib": max(r["peak_rss_bytes"] for r in mine) >> 20,
            "dtype": mine[0]["dtype"],
        }
    return summary


def main() -> int:
    """Run both loaders in alternating fresh processes (ABBA order) and write the timings as JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out")
    ap.add_argument("--ckpt")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--child", choices=("diffgraph", "diffusers"), help=argparse.SUPPRESS)
    ap.add_argument("--config-dir", help=argparse.SUPPRESS)
    args = ap.parse_args()
    ckpt = Path(args.ckpt) if args.ckpt else reference_checkpoint()
    if args.child:
        return child(args.child, ckpt, Path(args.config_dir))
    if not args.out:
        ap.error("--out is required")
    with tempfile.TemporaryDirectory() as tmp:
        config_dir = diffusers_config_dir(ckpt, Path(tmp))
        run_child("diffgraph", ckpt, config_dir)  # warms the page cache; not counted
        rows = []
        for i in range(args.rounds):
            order = ("diffgraph", "diffusers") if i % 2 == 0 else ("diffusers", "diffgraph")
            for name in order:
                row = {"round": i, "loader": name, **run_child(name, ckpt, config_dir)}
                rows.append(row)
                print(
                    f"round {i} {name:10s} {row['seconds']:7.2f} s  peak RSS {row['peak_rss_bytes'] >> 20} MiB"
                )
    summary = summarize(rows)
    result = {
        "checkpoint": str(ckpt),
        "bytes": ckpt.stat().st_size,
        "device": "cpu",
        "page_cache": "warm (one uncounted load first)",
        "process": "fresh interpreter per load, ABBA order",
        "peak_rss_note": "ru_maxrss: also counts the file's page-cache pages mapped while reading (both loaders map it)",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "load_avg_after": os.getloadavg(),
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
