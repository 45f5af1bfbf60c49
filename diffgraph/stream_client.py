"""A small client for a diffgraph server that receives every sampler step's latent over the websocket.

    with LatentClient("http://127.0.0.1:8188") as client:
        prompt_id = client.queue(api_prompt)
        steps = client.collect(prompt_id)        # {node_id: tensor [steps, B, C, h, w]}

The frame layout is documented in docs/latent-stream.md; `parse_latent_frame` reads one frame.
"""

from __future__ import annotations

import json
import struct
import time
import urllib.request
import uuid
from dataclasses import dataclass
from typing import Any

import numpy
import torch
from websockets.sync.client import ClientConnection, connect

LATENT_FRAME = 16
LATENTS_FLAG = "diffgraph_latents"


class StreamError(RuntimeError):
    """The server reported an error for the prompt, or the stream ended early."""


@dataclass
class LatentFrame:
    """One step's latent: which prompt and node, step index (0-based) of steps, values [B, C, h, w]."""

    prompt_id: str
    node_id: str
    step: int
    steps: int
    latents: torch.Tensor


def parse_latent_frame(frame: bytes) -> LatentFrame | None:
    """Decode a latent frame; None for any other binary frame (previews)."""
    if len(frame) < 8:
        return None
    kind, header_len = struct.unpack(">II", frame[:8])
    if kind != LATENT_FRAME:
        return None
    header = json.loads(frame[8 : 8 + header_len])
    order = "<" if header.get("byte_order", "little") == "little" else ">"
    values = numpy.frombuffer(frame[8 + header_len :], dtype=numpy.dtype(header["dtype"]).newbyteorder(order))
    tensor = torch.from_numpy(values.astype(values.dtype.newbyteorder("="))).reshape(header["shape"])
    return LatentFrame(header["prompt_id"], header["node_id"], header["step"], header["steps"], tensor)


class LatentClient:
    """A websocket + HTTP client that opted in to step latents (and to nothing else binary)."""

    def __init__(
        self, url: str = "http://127.0.0.1:8188", client_id: str | None = None, token: str | None = None
    ):
        self.url = url.rstrip("/")
        self.client_id = client_id or uuid.uuid4().hex
        self.token = token
        self.conn: ClientConnection | None = None

    def __enter__(self) -> LatentClient:
        ws_url = self.url.replace("http", "ws", 1) + f"/ws?clientId={self.client_id}"
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else None
        self.conn = connect(ws_url, additional_headers=headers, max_size=None, open_timeout=30)
        self.conn.send(json.dumps({"type": "feature_flags", "data": {LATENTS_FLAG: True}}))
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def queue(self, prompt: dict[str, Any], extra_data: dict[str, Any] | None = None) -> str:
        """POST the API prompt for this client; returns its prompt id."""
        body = json.dumps({"prompt": prompt, "client_id": self.client_id, "extra_data": extra_data or {}})
        request = urllib.request.Request(
            self.url + "/prompt", data=body.encode(), headers={"Content-Type": "application/json"}
        )
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())["prompt_id"]

    def frames(self, prompt_id: str, timeout: float = 600.0) -> list[LatentFrame]:
        """Every latent frame of prompt_id, in arrival order, until the prompt is done."""
        if self.conn is None:
            raise StreamError("use LatentClient as a context manager (with ... as client)")
        deadline = time.monotonic() + timeout
        received: list[LatentFrame] = []
        while True:
            raw = self.conn.recv(timeout=max(deadline - time.monotonic(), 0.01))
            if isinstance(raw, bytes):
                frame = parse_latent_frame(raw)
                if frame is not None and frame.prompt_id == prompt_id:
                    received.append(frame)
                continue
            message = json.loads(raw)
            data = message.get("data") or {}
            if data.get("prompt_id") != prompt_id:
                continue
            if message["type"] == "execution_error":
                raise StreamError(f"node {data.get('node_id')} failed: {data.get('exception_message')}")
            if message["type"] == "executing" and data.get("node") is None:
                return received

    def collect(self, prompt_id: str, timeout: float = 600.0) -> dict[str, torch.Tensor]:
        """{node_id: [steps, B, C, h, w]}, every step in order; raises when a step is missing."""
        by_node: dict[str, dict[int, LatentFrame]] = {}
        for frame in self.frames(prompt_id, timeout):
            by_node.setdefault(frame.node_id, {})[frame.step] = frame
        stacked = {}
        for node_id, steps in by_node.items():
            total = next(iter(steps.values())).steps
            missing = sorted(set(range(total)) - set(steps))
            if missing:
                raise StreamError(
                    f"node {node_id}: steps {missing} were dropped (the client read too slowly)"
                )
            stacked[node_id] = torch.stack([steps[i].latents for i in range(total)])
        return stacked
