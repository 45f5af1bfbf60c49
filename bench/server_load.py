"""Load benchmark of the HTTP server: a burst of prompts from many websocket clients at once.

Method: `diffgraph serve` runs in a subprocess over a tiny random SD1.5 checkpoint (generated here,
seed 0). M clients each open a websocket with their own client id and, all at the same moment, POST
their share of N txt2img prompts (64x64, 2 steps, distinct seeds) back to back, timing each POST and
a GET /queue after it (client-side wall time, from writing the request to reading the whole answer).
Every client reads its websocket all along, as a browser does, until each of its prompts sent its
final `executing {node: null}`. Reported: POST and GET latency percentiles, how many prompts finished
(and how), frames a client received for someone else's prompt (leaks), websocket frames received,
the server's RSS before and after, and the load average around the run (the machine may be shared).

The load generator must not be what is measured: all clients run as tasks of one asyncio loop in
this process (no threads contending for its GIL), each over one kept-alive HTTP/1.1 connection with
its requests encoded before the burst, so a client spends microseconds per request.
Usage: `python -m bench.server_load --prompts 200 --clients 20 --out load.json`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import connect

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


async def http_request(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes, body: bytes = b""
) -> tuple[int, bytes]:
    """One HTTP/1.1 request on a kept-alive connection: (status, body). The server always sends a length."""
    writer.write(head + body)
    await writer.drain()
    status_line = await reader.readuntil(b"\r\n")
    length = 0
    while (line := await reader.readuntil(b"\r\n")) != b"\r\n":
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return int(status_line.split()[1]), await reader.readexactly(length)


class Client:
    """One websocket client: posts its prompts on the start signal and reads its socket all along."""

    def __init__(self, url: str, seeds: list[int], ckpt: str, steps: int, wait: bool = True):
        self.url, self.seeds, self.ckpt, self.steps, self.wait = url, seeds, ckpt, steps, wait
        self.client_id = uuid.uuid4().hex
        self.post_ms: list[float] = []
        self.get_ms: list[float] = []
        self.mine: set[str] = set()
        self.done: dict[str, str] = {}
        self.leaks = 0
        self.frames = 0
        self.errors: list[str] = []
        self.all_posted = asyncio.Event()
        self.finished = asyncio.Event()
        self._last: dict[str, str] = {}
        self._seen: set[str] = set()

    def bodies(self, host: str) -> list[bytes]:
        """The encoded POST requests, built before the burst so the timed part is only the exchange."""
        requests = []
        for seed in self.seeds:
            body = json.dumps(
                {"prompt": prompt_for(seed, self.ckpt, self.steps), "client_id": self.client_id}
            ).encode()
            head = (
                f"POST /prompt HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            ).encode()
            requests.append(head + body)
        return requests

    async def post_all(self, go: asyncio.Event) -> None:
        """Wait for the signal, then POST /prompt and GET /queue alternately, timing each."""
        host = self.url.split("://", 1)[1]
        address, port = host.rsplit(":", 1)
        requests = self.bodies(host)
        get_queue = f"GET /queue HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
        reader, writer = await asyncio.open_connection(address, int(port))
        try:
            await go.wait()
            for request in requests:
                started = time.perf_counter()
                status, body = await http_request(reader, writer, request)
                self.post_ms.append((time.perf_counter() - started) * 1000)
                if status != 200:
                    self.errors.append(f"POST {status}: {body[:200]!r}")
                    continue
                self.mine.add(json.loads(body)["prompt_id"])
                started = time.perf_counter()
                await http_request(reader, writer, get_queue)
                self.get_ms.append((time.perf_counter() - started) * 1000)
        finally:
            writer.close()
            self.all_posted.set()
            self._check_done()

    async def read_socket(self, ws: Any) -> None:
        """Read every frame, as a browser does, noting completions and frames meant for others."""
        async for raw in ws:
            self.frames += 1
            if isinstance(raw, bytes):
                continue
            frame = json.loads(raw)
            data = frame.get("data") or {}
            prompt_id = data.get("prompt_id")
            if prompt_id is None:
                continue
            # A frame can arrive before the POST that queued its prompt has returned: judged at the end.
            if frame["type"] in ("execution_success", "execution_error", "execution_interrupted"):
                self._last[prompt_id] = frame["type"]
            if frame["type"] == "executing" and data.get("node") is None:
                self.done[prompt_id] = self._last.get(prompt_id, "unknown")
                self._check_done()
            self._seen.add(prompt_id)

    def _check_done(self) -> None:
        if self.all_posted.is_set() and self.mine <= self.done.keys():
            self.finished.set()

    def settle(self) -> None:
        """Count leaks (frames about prompts this client never queued) once every POST has returned."""
        self.leaks = len(self._seen - self.mine)
        self.done = {k: v for k, v in self.done.items() if k in self.mine}

    async def run(self, go: asyncio.Event, timeout: float) -> None:
        """Open the socket, post on the signal, wait for this client's prompts to finish."""
        ws_url = self.url.replace("http", "ws", 1) + f"/ws?clientId={self.client_id}"
        async with connect(ws_url, open_timeout=30, max_size=None, ping_interval=None) as ws:
            reading = asyncio.create_task(self.read_socket(ws))
            try:
                await self.post_all(go)
                if self.wait:
                    await asyncio.wait_for(self.finished.wait(), timeout)
            except TimeoutError:
                self.errors.append("timed out waiting for completions")
            finally:
                reading.cancel()
        self.settle()


async def burst(url: str, ckpt: str, args: argparse.Namespace) -> tuple[list[Client], float]:
    """All clients connect, then post at the same moment; returns them and the wall time of the burst."""
    go = asyncio.Event()
    clients = [
        Client(url, list(range(i, args.prompts, args.clients)), ckpt, args.steps, not args.no_wait)
        for i in range(args.clients)
    ]
    tasks = [asyncio.create_task(c.run(go, args.timeout)) for c in clients]
    await asyncio.sleep(1.0)  # every websocket is open and every request encoded before the burst
    started = time.perf_counter()
    go.set()
    await asyncio.gather(*tasks)
    return clients, time.perf_counter() - started


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the benchmark; returns the report."""
    load_before = os.getloadavg()
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
            clients, wall = asyncio.run(burst(url, ckpt, args))
            if args.no_wait:
                with httpx.Client(base_url=url, timeout=60) as http:
                    http.post("/queue", json={"clear": True})
                    http.post("/interrupt", json={})
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
        "ws_frames": sum(c.frames for c in clients),
        "rss_mb_before": rss_before,
        "rss_mb_after": rss_after,
        "rss_growth_mb": round(rss_after - rss_before, 1),
        "wall_s": round(wall, 1),
        "prompts_per_s": round(len(outcomes) / wall, 2) if wall else None,
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
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
    parser.add_argument(
        "--no-wait",
        action="store_true",
        help="measure submissions only: clear the queue after the burst instead of running every prompt",
    )
    parser.add_argument("--out", type=Path, help="write the JSON report here")
    args = parser.parse_args()
    report = run(args)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    complete = args.no_wait or report["completed"] == report["prompts"]
    return 0 if complete and report["cross_client_leaks"] == 0 and not report["post_errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
