"""Load benchmark of the HTTP server: a burst of prompts from many websocket clients at once.

Method: `diffgraph serve` runs in a subprocess over a tiny random SD1.5 checkpoint (generated here,
seed 0). M clients each open a websocket with their own client id and, all at the same moment, POST
their share of N txt2img prompts (64x64, 2 steps, distinct seeds) back to back, timing each POST and
a GET /queue after it. Each client then reads its websocket until every one of its prompts sent its
final `executing {node: null}`. Reported: POST and GET latency percentiles, how many prompts finished
(and how), frames a client received for someone else's prompt (leaks), and the server's RSS before
and after. Usage: `python -m bench.server_load --prompts 200 --clients 20 --out load.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from websockets.sync.client import connect

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / "workflows" / "txt2img_sd15.json"


def percentiles(values: list[float]) -> dict[str, float]:
    """p50/p90/p99/max of latencies in milliseconds."""
    if not values:
        return {}
    ordered = sorted(values)

    def pick(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)

    return {
        "p50": pick(0.5),
        "p90": pick(0.9),
        "p99": pick(0.99),
        "max": round(ordered[-1], 2),
        "n": len(values),
    }


def rss_mb(pid: int) -> float:
    """Resident memory of a process in MB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def start_server(base: Path, models: Path) -> tuple[subprocess.Popen[bytes], str]:
    """`python -m diffgraph serve --port 0` over base/; returns the process and its URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "diffgraph", "serve", "--port", "0", "--base-dir", str(base)]
        + ["--models-dir", str(models), "--log-level", "warning"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().decode()
    if "listening on" not in line:
        raise RuntimeError(f"server did not start: {line!r}")
    url = line.rsplit(" ", 1)[1].strip()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/prompt", timeout=2).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.2)
    raise RuntimeError("server did not answer")


def make_models(folder: Path) -> str:
    """A tiny random SD1.5 checkpoint under folder/checkpoints; returns its name."""
    from nodes.diffusion.make_checkpoint import make_checkpoint

    make_checkpoint("sd15", "tiny", 0, folder / "checkpoints" / "tiny-sd15.safetensors")
    return "tiny-sd15.safetensors"


def prompt_for(seed: int, ckpt: str, steps: int) -> dict[str, Any]:
    """The shipped txt2img workflow on the tiny checkpoint at 64x64."""
    prompt = json.loads(WORKFLOW.read_text())
    prompt["4"]["inputs"]["ckpt_name"] = ckpt
    prompt["5"]["inputs"].update(width=64, height=64)
    prompt["3"]["inputs"].update(seed=seed, steps=steps)
    return prompt


class Client(threading.Thread):
    """One websocket client: waits for the start signal, posts its prompts, then collects completions."""

    def __init__(
        self, url: str, seeds: list[int], ckpt: str, steps: int, go: threading.Event, timeout: float
    ):
        super().__init__(daemon=True)
        self.url, self.seeds, self.ckpt, self.steps, self.go, self.timeout = (
            url,
            seeds,
            ckpt,
            steps,
            go,
            timeout,
        )
        self.client_id = uuid.uuid4().hex
        self.post_ms: list[float] = []
        self.get_ms: list[float] = []
        self.mine: set[str] = set()
        self.done: dict[str, str] = {}
        self.leaks = 0
        self.errors: list[str] = []

    def run(self) -> None:
        ws_url = self.url.replace("http", "ws", 1) + f"/ws?clientId={self.client_id}"
        with (
            connect(ws_url, open_timeout=30, max_size=None, ping_interval=None) as ws,
            httpx.Client(base_url=self.url, timeout=60) as http,
        ):
            self.go.wait()
            for seed in self.seeds:
                body = {"prompt": prompt_for(seed, self.ckpt, self.steps), "client_id": self.client_id}
                started = time.perf_counter()
                response = http.post("/prompt", json=body)
                self.post_ms.append((time.perf_counter() - started) * 1000)
                if response.status_code != 200:
                    self.errors.append(f"POST {response.status_code}: {response.text[:200]}")
                    continue
                self.mine.add(response.json()["prompt_id"])
                started = time.perf_counter()
                http.get("/queue")
                self.get_ms.append((time.perf_counter() - started) * 1000)
            self._collect(ws)

    def _collect(self, ws: Any) -> None:
        deadline = time.monotonic() + self.timeout
        last: str | None = None
        while len(self.done) < len(self.mine) and time.monotonic() < deadline:
            try:
                raw = ws.recv(timeout=max(deadline - time.monotonic(), 0.1))
            except TimeoutError:
                break
            if isinstance(raw, bytes):
                continue
            frame = json.loads(raw)
            data = frame.get("data") or {}
            prompt_id = data.get("prompt_id")
            if prompt_id is not None and prompt_id not in self.mine:
                self.leaks += 1
            if frame["type"] in ("execution_success", "execution_error", "execution_interrupted"):
                last = frame["type"]
            if frame["type"] == "executing" and data.get("node") is None and prompt_id in self.mine:
                self.done[prompt_id] = last or "unknown"


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the benchmark; returns the report."""
    with tempfile.TemporaryDirectory(prefix="diffgraph-load-") as tmp:
        base = Path(tmp)
        ckpt = make_models(base / "models")
        proc, url = start_server(base, base / "models")
        try:
            with httpx.Client(base_url=url, timeout=600) as http:  # warm up: load the model once
                warm = http.post("/prompt", json={"prompt": prompt_for(10**9, ckpt, args.steps)}).json()[
                    "prompt_id"
                ]
                while not http.get(f"/history/{warm}").json():
                    time.sleep(0.2)
            rss_before = rss_mb(proc.pid)
            go = threading.Event()
            clients = [
                Client(url, list(range(i, args.prompts, args.clients)), ckpt, args.steps, go, args.timeout)
                for i in range(args.clients)
            ]
            for client in clients:
                client.start()
            time.sleep(1.0)  # every websocket is open before the burst
            started = time.perf_counter()
            go.set()
            for client in clients:
                client.join(args.timeout + 60)
            wall = time.perf_counter() - started
            rss_after = rss_mb(proc.pid)
        finally:
            proc.terminate()
            proc.wait(30)
    outcomes = [state for c in clients for state in c.done.values()]
    return {
        "prompts": args.prompts,
        "clients": args.clients,
        "steps": args.steps,
        "post_prompt_ms": percentiles([v for c in clients for v in c.post_ms]),
        "get_queue_ms": percentiles([v for c in clients for v in c.get_ms]),
        "accepted": sum(len(c.mine) for c in clients),
        "completed": len(outcomes),
        "succeeded": outcomes.count("execution_success"),
        "post_errors": [e for c in clients for e in c.errors][:10],
        "cross_client_leaks": sum(c.leaks for c in clients),
        "rss_mb_before": rss_before,
        "rss_mb_after": rss_after,
        "rss_growth_mb": round(rss_after - rss_before, 1),
        "wall_s": round(wall, 1),
        "prompts_per_s": round(len(outcomes) / wall, 2) if wall else None,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
    }


def main() -> int:
    """Parse options, run, print the report and write it to --out."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=200, help="prompts in the burst (200)")
    parser.add_argument("--clients", type=int, default=20, help="websocket clients posting at once (20)")
    parser.add_argument("--steps", type=int, default=2, help="sampler steps per prompt (2)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds to wait for completions (900)")
    parser.add_argument("--out", type=Path, help="write the JSON report here")
    args = parser.parse_args()
    report = run(args)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    return 0 if report["completed"] == report["prompts"] and report["cross_client_leaks"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
