"""Record the websocket events and history outputs a server produces for comfyui_prompts.json.

Usage: python record_events.py http://127.0.0.1:PORT OUT.json   (each prompt runs twice: fresh, then cached)
See README.md for how comfyui_events.json was made with it.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from websockets.sync.client import connect

# In submission order: the server's cache carries over from one prompt to the next.
PROMPTS = json.loads((Path(__file__).parent / "comfyui_prompts.json").read_text(encoding="utf-8"))
KEPT = {
    "execution_start",
    "execution_cached",
    "executing",
    "executed",
    "execution_error",
    "execution_success",
    "execution_interrupted",
    "dg_test.shown",
}


def normalised(kind: str, data: dict[str, Any]) -> list[Any]:
    """The parts of an event both servers must agree on (no timestamps, no prompt ids)."""
    if kind == "executing":
        return [kind, data["node"], data.get("display_node")]
    if kind == "executed":
        return [kind, data["node"], data.get("display_node"), data["output"]]
    if kind == "execution_cached":
        return [kind, sorted(data["nodes"])]
    if kind == "execution_error":
        return [kind, data["node_id"], data["exception_message"]]
    if kind == "dg_test.shown":
        return [kind, data]
    return [kind]


def record(url: str, prompt: dict[str, Any]) -> dict[str, Any]:
    """Events until the prompt's final `executing null`, and its history outputs."""
    events = []
    with (
        connect(url.replace("http", "ws", 1) + "/ws?clientId=rec", open_timeout=20) as ws,
        httpx.Client(base_url=url, timeout=30) as http,
    ):
        reply = http.post("/prompt", json={"prompt": prompt, "client_id": "rec"})
        reply.raise_for_status()
        prompt_id = reply.json()["prompt_id"]
        while True:
            raw = ws.recv(timeout=30)
            if isinstance(raw, bytes):
                continue
            frame = json.loads(raw)
            kind, data = frame["type"], frame["data"]
            if kind == "executing" and data["node"] is None and data.get("prompt_id") == prompt_id:
                break
            if kind in KEPT and data.get("prompt_id", prompt_id) == prompt_id:
                events.append(normalised(kind, data))
        time.sleep(0.2)
        history = http.get(f"/history/{prompt_id}").json()[prompt_id]
    return {"events": events, "outputs": history["outputs"]}


def main() -> None:
    """Run every prompt twice against the server and write the recording."""
    url, out = sys.argv[1], Path(sys.argv[2])
    recording = {
        f"{name}/{run}": record(url, prompt)
        for name, prompt in PROMPTS.items()
        for run in ("first", "second")
    }
    out.write_text(json.dumps(recording, indent=1, sort_keys=True), encoding="utf-8")


if __name__ == "__main__":
    main()
