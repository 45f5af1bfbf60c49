"""Benchmark of `--ray` batches: scaling from 1 to N workers, per-item overhead, model loads per worker.

Run from the checkout root: `python -m bench.distributed --out FILE.json`.

Method: the txt2img workflow on a tiny random-weight SD1.5 checkpoint made locally (64x64, few steps),
every worker reserving --worker-cpus CPUs (torch uses that many threads; the local baseline gets the
same). Figures:
- overhead: the same item repeated (every node cached except SaveImage), per item on a local Session
  and on a 1-worker pool; the difference is what the pool adds per item (dispatch, events, file bytes);
- scaling: distinct seeds on warm pools of 1 and N workers, items per second, efficiency = ratio / N;
- loads: a --sweep-item seed sweep on a fresh N-worker pool, per worker: items, model-store loads,
  and how often the checkpoint loader and the text encoders ran.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

WORKFLOW = Path(__file__).resolve().parent.parent / "workflows" / "txt2img_sd15.json"


def make_models(root: Path) -> Path:
    """A models folder holding the tiny random-weight checkpoint."""
    from nodes.diffusion.make_checkpoint import make_checkpoint

    path = root / "models" / "checkpoints" / "tiny.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        make_checkpoint("sd15", "tiny", 0, path)
    return root / "models"


def workflow(session: Any, steps: int, side: int) -> Any:
    """txt2img on the tiny checkpoint, small and short."""
    wf = session.load(WORKFLOW)
    wf.set("4", "ckpt_name", "tiny.safetensors").set("5", "width", side).set("5", "height", side)
    return wf.set("3", "steps", steps)


def variants(wf: Any, seeds: range | list[int]) -> list[Any]:
    """One copy of wf per seed."""
    return [wf.copy().set("3", "seed", seed) for seed in seeds]


def timed_map(cluster: Any, workflows: list[Any]) -> tuple[float, list[Any]]:
    """(seconds, results) of one map over workflows; every result must succeed."""
    started = time.perf_counter()
    results = list(cluster.map(workflows))
    seconds = time.perf_counter() - started
    failed = [r.error_message() for r in results if not r.ok]
    if failed:
        raise SystemExit(f"benchmark items failed: {failed[:3]}")
    return seconds, results


def local_baseline(models: Path, out: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Per-item seconds on a local Session: a repeated (cached) item, and distinct seeds."""
    import torch

    from diffgraph import Session

    torch.set_num_threads(max(1, int(args.worker_cpus)))
    with Session(models_dir=models, output_dir=out / "local") as session:
        wf = workflow(session, args.steps, args.side)
        session.run(wf.copy().set("3", "seed", 0))
        started = time.perf_counter()
        for _ in range(args.repeat):
            session.run(wf.copy().set("3", "seed", 0))
        repeated = (time.perf_counter() - started) / args.repeat
        started = time.perf_counter()
        for item in variants(wf, range(1, args.scaling_items + 1)):
            session.run(item)
        distinct = (time.perf_counter() - started) / args.scaling_items
    return {"repeated_item_s": repeated, "distinct_item_s": distinct}


def pool_run(models: Path, out: Path, args: argparse.Namespace, workers: int, sweep: bool) -> dict[str, Any]:
    """Figures of one pool: the sweep's loads (fresh pool), then repeated and distinct items (warm)."""
    from diffgraph import DistributedSession

    report: dict[str, Any] = {"workers": workers}
    started = time.perf_counter()
    with DistributedSession(
        args.address,
        workers=workers,
        worker_cpus=args.worker_cpus,
        models_dir=models,
        output_dir=out / f"pool{workers}",
    ) as cluster:
        report["startup_s"] = time.perf_counter() - started
        wf = workflow(cluster, args.steps, args.side)
        if sweep:
            seconds, results = timed_map(cluster, variants(wf, range(1000, 1000 + args.sweep_items)))
            report["sweep"] = sweep_report(seconds, results)
        else:
            timed_map(cluster, variants(wf, range(900, 900 + workers)))  # warm every worker
        seconds, _ = timed_map(cluster, [wf.copy().set("3", "seed", 0) for _ in range(args.repeat)])
        report["repeated_item_s"] = seconds / args.repeat
        seconds, results = timed_map(cluster, variants(wf, range(1, args.scaling_items + 1)))
        report["distinct_items_per_s"] = args.scaling_items / seconds
        # Time inside the workers' executors: tells CPU contention apart from scheduling cost.
        report["distinct_worker_item_s_mean"] = sum(r.seconds for r in results) / len(results)
        report["distinct_by_worker"] = dict(Counter(r.worker for r in results))
    return report


def sweep_report(seconds: float, results: list[Any]) -> dict[str, Any]:
    """Per worker: items, model-store loads, checkpoint-loader and text-encoder runs."""
    per_worker: dict[str, dict[str, int]] = {}
    for result in results:
        row = per_worker.setdefault(
            result.worker, {"items": 0, "model_loads": 0, "checkpoint_loader_runs": 0, "text_encoder_runs": 0}
        )
        row["items"] += 1
        row["model_loads"] += result.model_loads
        row["checkpoint_loader_runs"] += int("4" in result.executed)
        row["text_encoder_runs"] += int("6" in result.executed) + int("7" in result.executed)
    return {
        "items": len(results),
        "seconds": seconds,
        "items_per_s": len(results) / seconds,
        "per_worker": per_worker,
    }


def main(argv: list[str] | None = None) -> int:
    """Run every measurement and write the JSON report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="JSON report to write")
    parser.add_argument("--address", help="Ray cluster to join (default: start a local one)")
    parser.add_argument("--workers", type=int, default=2, help="workers of the scaled pool (2)")
    parser.add_argument("--worker-cpus", type=float, default=1.0, help="CPUs per worker (1)")
    parser.add_argument("--sweep-items", type=int, default=100, help="items of the loads sweep (100)")
    parser.add_argument("--scaling-items", type=int, default=16, help="distinct items per scaling run (16)")
    parser.add_argument("--repeat", type=int, default=30, help="repeats of the cached item (30)")
    parser.add_argument("--steps", type=int, default=4, help="sampler steps (4)")
    parser.add_argument("--side", type=int, default=64, help="image side in pixels (64)")
    parser.add_argument(
        "--note", default="", help="free text stored with the numbers (the machine, its load)"
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # Throughput numbers must not depend on a neighbour's memory use: Ray's memory monitor (which
    # kills workers when the machine runs short) stays off for the local cluster this starts.
    os.environ.setdefault("RAY_memory_monitor_refresh_ms", "0")
    with tempfile.TemporaryDirectory(prefix="diffgraph-bench-") as tmp:
        root = Path(tmp)
        models = make_models(root)
        load_before = os.getloadavg()
        local = local_baseline(models, root, args)
        one = pool_run(models, root, args, 1, sweep=False)
        many = pool_run(models, root, args, args.workers, sweep=True)
        load_after = os.getloadavg()
    speedup = many["distinct_items_per_s"] / one["distinct_items_per_s"]
    report = {
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load_average_before": load_before,
            "load_average_after": load_after,
            "note": args.note,
        },
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "local": local,
        "pool_1": one,
        f"pool_{args.workers}": many,
        "summary": {
            "overhead_ms_per_item": 1000 * (one["repeated_item_s"] - local["repeated_item_s"]),
            "items_per_s_1_worker": one["distinct_items_per_s"],
            f"items_per_s_{args.workers}_workers": many["distinct_items_per_s"],
            "speedup": speedup,
            "scaling_efficiency": speedup / args.workers,
            "sweep_per_worker": many["sweep"]["per_worker"],
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    print(json.dumps(report["summary"], indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
