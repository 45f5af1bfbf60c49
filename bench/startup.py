"""Bench: time to first step of a fresh `diffgraph run` process, split by stage, with peak RSS per stage.

    python -m bench.startup --ckpt sd15.safetensors --out bench/results/startup.json [--rounds 2]

Each round starts a fresh interpreter that does what `diffgraph run` does (import the CLI and the node
pack, open a Session, run an API txt2img workflow: 256x256, CFG 7, euler, 3 steps, VAE decode) and
stamps every stage from the engine's events: process start (spawn to the first line of Python),
imports (CLI, node pack, registry), checkpoint load, text encode, first step (sampler start to the first
step's progress), steady step, VAE decode; ru_maxrss is read at the end of each stage. A further fresh
process runs the imports under `python -X importtime` and lists the heaviest top-level modules. The
same file is then loaded by diffgraph's loader and by diffusers' from_single_file, each in a fresh
interpreter, alternating (bench.load_checkpoint), so both load times come from one run.
"""

from __future__ import annotations

import time

SPAWNED_AT = time.time()  # first line of Python: everything before it is interpreter start-up

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
STEPS = 3
NODES = {"load": "4", "encode": ("6", "7"), "latent": "5", "sampler": "3", "decode": "8", "output": "9"}


def workflow(ckpt_name: str, size: int) -> dict[str, Any]:
    """The API txt2img workflow every round runs."""
    return {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt_name}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red fox in snow", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["4", 1]}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": size, "height": size, "batch_size": 1}},
        "3": {
            "class_type": "KSampler",
            "inputs": {
                "seed": 1,
                "steps": STEPS,
                "cfg": 7.0,
                "sampler_name": "euler",
                "scheduler": "normal",
                "denoise": 1.0,
                "model": ["4", 0],
                "positive": ["6", 0],
                "negative": ["7", 0],
                "latent_image": ["5", 0],
            },
        },
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "PreviewImage", "inputs": {"images": ["8", 0]}},
    }


def peak_rss_mib() -> int:
    """This process's peak resident set so far, MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss >> 10


def import_run_modules() -> None:
    """What `diffgraph run` imports before it opens a Session (the CLI and its command)."""
    import diffgraph.commands.run  # noqa: F401
    from diffgraph.api import Session  # noqa: F401


def child_run(spawn: float, models_dir: Path, ckpt_name: str, size: int) -> dict[str, Any]:
    """One fresh-process run; returns the stage times (s) and the peak RSS at each stage's end (MiB)."""
    main_at = SPAWNED_AT
    rss = {"process_start": peak_rss_mib()}
    import_run_modules()
    from diffgraph.api import Session
    from engine.events import Executing, Progress

    with tempfile.TemporaryDirectory() as tmp:
        session = Session(models_dir=models_dir, output_dir=Path(tmp) / "out", input_dir=Path(tmp))
        imported_at = time.time()
        rss["imports"] = peak_rss_mib()
        marks: list[tuple[float, str, int]] = []  # (time, what, peak RSS)

        def sink(event: Any) -> None:
            if isinstance(event, Executing):
                marks.append((time.time(), f"start:{event.node}", peak_rss_mib()))
            elif isinstance(event, Progress) and event.node == NODES["sampler"]:
                marks.append((time.time(), f"step:{event.value}", peak_rss_mib()))

        session.run(session.load(workflow(ckpt_name, size)), sink=sink)
        session.close()
    return {
        "process_start_s": main_at - spawn,
        "imports_s": imported_at - main_at,
        **stage_times(marks, imported_at, spawn),
        "peak_rss_mib": {**rss, **stage_rss(marks)},
    }


def _at(marks: list[tuple[float, str, int]], what: str) -> tuple[float, int]:
    for t, name, rss in marks:
        if name == what:
            return t, rss
    raise KeyError(what)


def _end_of(marks: list[tuple[float, str, int]], what: str) -> tuple[float, int]:
    """Time and RSS when the stage that started with `what` ended (the next mark)."""
    names = [m[1] for m in marks]
    t, name, rss = marks[names.index(what) + 1]
    return t, rss


def stage_times(marks: list[tuple[float, str, int]], imported_at: float, spawn: float) -> dict[str, float]:
    """Seconds per stage from the event marks."""
    load = _end_of(marks, f"start:{NODES['load']}")[0] - _at(marks, f"start:{NODES['load']}")[0]
    encode = sum(_end_of(marks, f"start:{n}")[0] - _at(marks, f"start:{n}")[0] for n in NODES["encode"])
    sampler_start = _at(marks, f"start:{NODES['sampler']}")[0]
    steps = [_at(marks, f"step:{i}")[0] for i in range(1, STEPS + 1)]
    decode = _end_of(marks, f"start:{NODES['decode']}")[0] - _at(marks, f"start:{NODES['decode']}")[0]
    return {
        "before_workflow_s": _at(marks, marks[0][1])[0] - imported_at,
        "checkpoint_load_s": load,
        "text_encode_s": encode,
        "first_step_s": steps[0] - sampler_start,
        "steady_step_s": statistics.median(b - a for a, b in zip(steps, steps[1:], strict=False)),
        "vae_decode_s": decode,
        "time_to_first_step_s": steps[0] - spawn,
    }


def stage_rss(marks: list[tuple[float, str, int]]) -> dict[str, int]:
    """Peak RSS (MiB) at the end of each stage."""
    return {
        "checkpoint_load": _end_of(marks, f"start:{NODES['load']}")[1],
        "text_encode": _end_of(marks, f"start:{NODES['encode'][1]}")[1],
        "first_step": _at(marks, "step:1")[1],
        "sampling": _at(marks, f"step:{STEPS}")[1],
        "vae_decode": _end_of(marks, f"start:{NODES['decode']}")[1],
    }


def heaviest_imports(limit: int = 15) -> dict[str, Any]:
    """`python -X importtime` of a run's imports (CLI, node pack, registry) in a fresh process.

    Self times are summed per top-level package, so the share of diffgraph's own modules (diffgraph,
    engine, nodes) stands beside torch's, diffusers' and what those pull in.
    """
    code = (
        "import tempfile, pathlib, bench.startup as s; s.import_run_modules(); "
        "from nodes.pack import build_registry; from engine import ModelPaths; "
        "d = pathlib.Path(tempfile.mkdtemp()); build_registry(ModelPaths(d), d)"
    )
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    by_package: dict[str, float] = {}
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        fields = line.split("|")
        root = fields[2].strip().split(".")[0]
        by_package[root] = by_package.get(root, 0.0) + int(fields[0].split(":")[1]) / 1e6
    ranked = sorted(by_package.items(), key=lambda kv: -kv[1])
    ours = sum(by_package.get(p, 0.0) for p in ("diffgraph", "engine", "nodes", "server"))
    return {
        "total_s": round(sum(by_package.values()), 3),
        "diffgraph_own_modules_s": round(ours, 3),
        "self_s_by_package": {k: round(v, 3) for k, v in ranked[:limit]},
        "loaded": {
            m: m in by_package for m in ("torch", "diffusers", "transformers", "PIL", "av", "spandrel")
        },
    }


def spawn_child(models_dir: Path, ckpt_name: str, size: int) -> dict[str, Any]:
    """A fresh interpreter runs one round; its last stdout line is the JSON result."""
    spawn = time.time()
    cmd = [sys.executable, "-m", "bench.startup", "--child", str(spawn), "--models-dir", str(models_dir)]
    cmd += ["--ckpt-name", ckpt_name, "--size", str(size)]
    out = subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def load_comparison(ckpt: Path, rounds: int) -> dict[str, Any]:
    """diffgraph's loader vs diffusers' from_single_file on the same file, fresh processes, alternating."""
    from bench.load_checkpoint import diffusers_config_dir, run_child, summarize

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        config_dir = diffusers_config_dir(ckpt, Path(tmp))
        for i in range(rounds):
            order = ("diffgraph", "diffusers") if i % 2 == 0 else ("diffusers", "diffgraph")
            rows += [{"round": i, "loader": name, **run_child(name, ckpt, config_dir)} for name in order]
    summary = summarize(rows)
    summary["diffgraph_over_diffusers"] = round(
        summary["diffgraph"]["median_s"] / summary["diffusers"]["median_s"], 3
    )
    return {"rows": rows, "summary": summary}


def summarize_rounds(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Median of every timing over the rounds; RSS of the last round."""
    keys = [k for k in rounds[0] if k.endswith("_s")]
    return {k: round(statistics.median(r[k] for r in rounds), 3) for k in keys}


def main() -> int:
    """Parent: rounds of fresh-process runs, the import profile and the load comparison, as JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ckpt", type=Path, help="a full-size SD1.5 single file")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--load-rounds", type=int, default=2)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--child", type=float, help=argparse.SUPPRESS)
    ap.add_argument("--models-dir", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--ckpt-name", help=argparse.SUPPRESS)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.child is not None:
        print(json.dumps(child_run(args.child, args.models_dir, args.ckpt_name, args.size)))
        return 0
    if not args.ckpt or not args.out:
        ap.error("--ckpt and --out are required")
    with tempfile.TemporaryDirectory() as tmp:
        models = Path(tmp) / "models"
        models.mkdir()
        # The folder, not the file, is linked: a linked file would lead outside checkpoints/ (refused).
        (models / "checkpoints").symlink_to(args.ckpt.resolve().parent, target_is_directory=True)
        spawn_child(models, args.ckpt.name, args.size)  # warms the page cache; not counted
        rounds = []
        for i in range(args.rounds):
            rounds.append(spawn_child(models, args.ckpt.name, args.size))
            print(f"round {i}: {json.dumps(rounds[-1])}", file=sys.stderr)
    result = {
        "workflow": f"{args.ckpt.name}, {args.size}x{args.size}, CFG 7, euler, {STEPS} steps, VAE decode",
        "what": "a fresh process doing what `diffgraph run` does; page cache warm (one uncounted round first)",
        "median": summarize_rounds(rounds),
        "rounds": rounds,
        "imports": heaviest_imports(),
        "checkpoint_load_vs_diffusers": load_comparison(args.ckpt, args.load_rounds),
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "load_avg_after": os.getloadavg(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result["median"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
