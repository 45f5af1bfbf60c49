"""Bench: one API workflow on a running ComfyUI server and on a diffgraph server, alternating, timed from the websocket.

Used by `bench/sampling.py --vs-comfyui URL`. The person running the benchmark starts ComfyUI (this module
only talks HTTP and websocket to it; ComfyUI is never imported or installed by diffgraph). The diffgraph
side is `python -m diffgraph serve` started here from this checkout (with the requested precision and
compile settings), or an already running server named by `--diffgraph-url`.

Timing: the client timestamps each websocket `progress` frame of the KSampler on arrival. A step's time is
the gap between consecutive frames; steady-state steps are every gap after the first frame of each warm
round (round 0 loads the model and is reported separately). Time to first step: from POST /prompt to the
first `progress` frame, for the cold round (after POST /free unloaded every model, so it includes loading
the checkpoint and encoding the prompt) and for warm rounds (new seed only). Peak RSS: VmHWM of each
server process (found by its listening port in /proc), reset at the start where the kernel allows it.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from websockets.sync.client import ClientConnection, connect

REPO = Path(__file__).resolve().parents[1]
POSITIVE = "a photo of a cat sitting on a windowsill, highly detailed"
NEGATIVE = "blurry, low quality"


def api_workflow(ckpt_name: str, seed: int, size: int, steps: int, cfg: float = 7.0) -> dict[str, Any]:
    """Checkpoint -> two prompts -> empty latent -> KSampler (euler, normal) -> VAE decode -> preview image."""
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt_name}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": POSITIVE, "clip": ["1", 1]}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": NEGATIVE, "clip": ["1", 1]}},
        "4": {"class_type": "EmptyLatentImage", "inputs": {"width": size, "height": size, "batch_size": 1}},
        "5": {
            "class_type": "KSampler",
            "inputs": {
                "model": ["1", 0],
                "positive": ["2", 0],
                "negative": ["3", 0],
                "latent_image": ["4", 0],
                "seed": seed,
                "steps": steps,
                "cfg": cfg,
                "sampler_name": "euler",
                "scheduler": "normal",
                "denoise": 1.0,
            },
        },
        "6": {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["1", 2]}},
        "7": {"class_type": "PreviewImage", "inputs": {"images": ["6", 0]}},
    }


@dataclass
class RunTiming:
    """Client-side timestamps (perf_counter seconds) of one prompt."""

    queued: float
    progress: list[float] = field(default_factory=list)
    done: float = 0.0

    @property
    def first_step_s(self) -> float:
        """From POST /prompt to the first step's progress frame."""
        return self.progress[0] - self.queued

    @property
    def step_gaps(self) -> list[float]:
        """Seconds between consecutive progress frames (the steps after the first)."""
        return [b - a for a, b in zip(self.progress, self.progress[1:], strict=False)]


class ServerClient:
    """HTTP + websocket client of a ComfyUI-protocol server (ComfyUI itself or diffgraph)."""

    def __init__(self, url: str):
        self.url = url.rstrip("/")
        self.client_id = uuid.uuid4().hex
        ws_url = self.url.replace("http", "ws", 1) + f"/ws?clientId={self.client_id}"
        self.conn: ClientConnection = connect(ws_url, max_size=None, open_timeout=60)

    def post(self, route: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST JSON; the decoded reply ({} when empty)."""
        request = urllib.request.Request(
            self.url + route, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=120) as response:
            raw = response.read()
        return json.loads(raw) if raw.strip() else {}

    def run(self, prompt: dict[str, Any], timeout: float = 3600.0) -> RunTiming:
        """Queue the prompt and record when each sampler step's progress frame arrives."""
        queued = time.perf_counter()
        reply = self.post(
            "/prompt",
            {"prompt": prompt, "client_id": self.client_id, "extra_data": {"preview_method": "none"}},
        )
        prompt_id = reply["prompt_id"]
        timing = RunTiming(queued)
        deadline = time.monotonic() + timeout
        while True:
            raw = self.conn.recv(timeout=max(deadline - time.monotonic(), 0.01))
            now = time.perf_counter()
            if isinstance(raw, bytes):
                continue  # previews (none were asked for) and other binary frames
            message = json.loads(raw)
            data = message.get("data") or {}
            if data.get("prompt_id") != prompt_id:
                continue
            if message["type"] == "progress" and data.get("node") == "5":
                timing.progress.append(now)
            elif message["type"] == "execution_error":
                raise RuntimeError(f"{self.url}: node {data.get('node_id')} failed: {data}")
            elif message["type"] == "executing" and data.get("node") is None:
                timing.done = now
                return timing

    def close(self) -> None:
        """Close the websocket."""
        self.conn.close()


def listening_pid(port: int) -> int | None:
    """The pid of the local process listening on a TCP port (Linux /proc), None when not found."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if parts[3] == "0A" and int(parts[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                inodes.add(parts[9])
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    return int(proc.name)
        except OSError:
            continue
    return None


def memory_mb(pid: int | None) -> dict[str, float | None]:
    """Peak (VmHWM) and current (VmRSS) resident memory of a process in MiB."""
    values: dict[str, float | None] = {"peak_rss_mb": None, "rss_mb": None}
    if pid is None:
        return values
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            values["peak_rss_mb"] = float(line.split()[1]) / 1024
        elif line.startswith("VmRSS:"):
            values["rss_mb"] = float(line.split()[1]) / 1024
    return values


def reset_peak_rss(pid: int | None) -> bool:
    """Reset a process's VmHWM to its current RSS; False where the kernel refuses."""
    if pid is None:
        return False
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def start_diffgraph(models_dir: Path, port: int, env: dict[str, str], work: Path) -> subprocess.Popen:
    """`python -m diffgraph serve` from this checkout on a loopback port; waits until it answers."""
    cmd = [sys.executable, "-m", "diffgraph", "serve", "--port", str(port), "--base-dir", str(work)]
    cmd += ["--models-dir", str(models_dir)]
    log = (work / "server.log").open("w")
    proc = subprocess.Popen(cmd, cwd=REPO, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT)
    for _ in range(600):
        if proc.poll() is not None:
            raise SystemExit(f"diffgraph serve exited: {(work / 'server.log').read_text()[-2000:]}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/system_stats", timeout=5).read()
            return proc
        except OSError:
            time.sleep(1)
    proc.terminate()
    raise SystemExit("diffgraph serve did not answer within 600 s")


def median(values: list[float]) -> float | None:
    """The median, or None for no values."""
    return statistics.median(values) if values else None


def summarize(timings: list[RunTiming], memory: dict[str, float | None]) -> dict[str, Any]:
    """Per-side figures: steady-state step median, time to first step (cold and warm), memory."""
    warm = timings[1:] if len(timings) > 1 else timings
    gaps = [g for t in warm for g in t.step_gaps]
    return {
        "step_s_median": median(gaps),
        "step_s_samples": gaps,
        "first_step_s_cold": timings[0].first_step_s,
        "first_step_s_warm_median": median([t.first_step_s for t in warm]),
        "run_s_warm_median": median([t.done - t.queued for t in warm]),
        **memory,
    }


def compare(args: Any) -> dict[str, Any]:
    """Alternate the workflow on both servers for `args.rounds` rounds; the JSON-ready result."""
    with tempfile.TemporaryDirectory(prefix="diffgraph-bench-") as work:
        proc = None
        url = args.diffgraph_url
        if url is None:
            env = {"DIFFGRAPH_PRECISION": args.precision, "DIFFGRAPH_COMPILE": "1" if args.compile else "0"}
            proc = start_diffgraph(args.models_dir, args.diffgraph_port, env, Path(work))
            url = f"http://127.0.0.1:{args.diffgraph_port}"
        try:
            return _alternate(args, {"comfyui": args.vs_comfyui, "diffgraph": url})
        finally:
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=60)


def _alternate(args: Any, urls: dict[str, str]) -> dict[str, Any]:
    clients = {side: ServerClient(url) for side, url in urls.items()}
    pids = {side: listening_pid(int(url.rsplit(":", 1)[1].split("/")[0])) for side, url in urls.items()}
    timings: dict[str, list[RunTiming]] = {side: [] for side in urls}
    load = os.getloadavg()
    for side, client in clients.items():
        client.post("/free", {"unload_models": True, "free_memory": True})
        reset_peak_rss(pids[side])
    time.sleep(2)  # /free is applied by the worker before the next prompt; let both settle
    for r in range(args.rounds):
        order = list(urls) if r % 2 == 0 else list(reversed(urls))
        for side in order:
            prompt = api_workflow(args.ckpt_name, 1000 + r, args.size, args.steps)
            timings[side].append(clients[side].run(prompt))
            print(f"round {r} {side}: {timings[side][-1].step_gaps}", file=sys.stderr, flush=True)
    for client in clients.values():
        client.close()
    sides = {side: summarize(timings[side], memory_mb(pids[side])) for side in urls}
    ours, theirs = sides["diffgraph"]["step_s_median"], sides["comfyui"]["step_s_median"]
    return {
        "workflow": f"{args.ckpt_name}, {args.size}x{args.size}, batch 1, cfg 7, euler/normal, {args.steps} steps",
        "diffgraph_precision": args.precision if args.diffgraph_url is None else "as the server was started",
        "diffgraph_compile": bool(args.compile) if args.diffgraph_url is None else None,
        "rounds": args.rounds,
        "step_ratio_diffgraph_over_comfyui": ours / theirs if ours and theirs else None,
        "comfyui": sides["comfyui"],
        "diffgraph": sides["diffgraph"],
        "loadavg_start": load,
        "loadavg_end": os.getloadavg(),
        "cpu_count": os.cpu_count(),
        "method": "steady-state step = median gap between consecutive KSampler progress frames of warm "
        "rounds; rounds alternate which server goes first",
    }
