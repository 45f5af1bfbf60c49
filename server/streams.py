"""Binary frames for live previews and step latents, built off the sampler's thread.

The worker thread only enqueues; a sender thread encodes JPEGs and packs latents, then hands the
frames to the hub. When it falls behind, latents are dropped and the oldest waiting preview gives way
to the newest, so a slow client or a slow encoder never slows sampling and previews stay current. Latent frame layout (documented in docs/latent-stream.md):
`[u32 LATENT_FRAME][u32 header length][header JSON, UTF-8][raw tensor bytes, little-endian]`, all
integers big-endian as in ComfyUI's other binary frames.
"""

from __future__ import annotations

import io
import json
import logging
import queue
import struct
import sys
import threading
from typing import Any

from PIL import Image

from engine.events import PreviewImage, StepLatent
from server.hub import Bridge, Hub

log = logging.getLogger(__name__)
LATENT_FRAME = 16
PREVIEW_BACKLOG = 4
LATENT_BACKLOG = 256


def encode_preview(image: Image.Image) -> bytes:
    """A preview picture as ComfyUI sends it, JPEG quality 95 (nodes already sized it: Environment)."""
    if image.mode != "RGB":
        image = image.convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def latent_frame(event: StepLatent) -> bytes:
    """One step's latent as a binary frame: type, header length, JSON header, raw values."""
    tensor = event.latents.detach().cpu().contiguous()
    header = {
        "prompt_id": event.prompt_id,
        "node_id": event.node_id,
        "step": event.step,
        "steps": event.steps,
        "shape": list(tensor.shape),
        "dtype": str(tensor.dtype).removeprefix("torch."),
        "byte_order": sys.byteorder,
    }
    raw_header = json.dumps(header).encode()
    values = tensor.numpy().tobytes()
    return struct.pack(">II", LATENT_FRAME, len(raw_header)) + raw_header + values


class FrameSender:
    """A thread that turns preview and latent events into binary frames for the hub."""

    def __init__(self, hub: Hub, bridge: Bridge):
        self.hub = hub
        self.bridge = bridge
        self.previews: queue.Queue[tuple[Any, PreviewImage, bool] | None] = queue.Queue(PREVIEW_BACKLOG)
        self.latents: queue.Queue[tuple[Any, StepLatent] | None] = queue.Queue(LATENT_BACKLOG)
        self.dropped = 0
        self._wake = threading.Semaphore(0)
        self._idle = threading.Condition()
        self._pending = 0
        self._thread = threading.Thread(target=self._loop, name="diffgraph-frames", daemon=True)
        self._stopping = False

    def start(self) -> None:
        """Start the sender thread."""
        self._thread.start()

    def stop(self) -> None:
        """Send what is queued, then end the thread."""
        self._stopping = True
        self._wake.release()
        self._thread.join(5)

    def preview(self, client_id: str | None, event: PreviewImage, requested: bool) -> None:
        """Queue a preview picture; when the sender is behind, the oldest waiting one gives way (latest wins)."""
        with self._idle:
            if self.previews.full():
                try:
                    self.previews.get_nowait()
                except queue.Empty:  # the sender just took it: room again
                    pass
                else:
                    self.dropped += 1
                    self._pending -= 1  # its wake-up stays counted; the loop finds nothing and waits again
        self._put(self.previews, (client_id, event, requested))

    def latent(self, client_id: str | None, event: StepLatent) -> None:
        """Queue a step latent; dropped when the sender is behind."""
        self._put(self.latents, (client_id, event))

    def _put(self, target: queue.Queue[Any], item: Any) -> None:
        with self._idle:
            try:
                target.put_nowait(item)
            except queue.Full:
                self.dropped += 1
                return
            self._pending += 1
        self._wake.release()

    def flush(self, timeout: float = 2.0) -> None:
        """Wait until queued frames went to the hub (at the end of a prompt, never during sampling)."""
        with self._idle:
            self._idle.wait_for(lambda: self._pending == 0, timeout)

    def _loop(self) -> None:
        while True:
            self._wake.acquire()
            if self._drain_one():
                with self._idle:
                    self._pending -= 1
                    self._idle.notify_all()
                continue
            if self._stopping:
                return

    def _drain_one(self) -> bool:
        """Send one queued latent (first: clients asked for every one) or preview; False when idle."""
        try:
            client_id, latent = self.latents.get_nowait()  # type: ignore[misc]
        except queue.Empty:
            pass
        else:
            self.bridge.call(self.hub.latent, latent_frame(latent), client_id)
            return True
        try:
            client_id, event, requested = self.previews.get_nowait()  # type: ignore[misc]
        except queue.Empty:
            return False
        meta = {
            "node_id": event.node_id,
            "prompt_id": event.prompt_id,
            "display_node_id": event.node_id,
            "parent_node_id": None,
            "real_node_id": event.node_id,
        }
        image = encode_preview(event.image)
        self.bridge.call(self.hub.preview, image, "image/jpeg", meta, client_id, requested)
        return True
