"""Websocket clients: ids, feature flags, ordered per-client send queues, message routing and resync.

Everything here runs on the event loop; the worker thread reaches it only through `Bridge`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import struct
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from engine.strict_json import InputRejected, loads_strict

log = logging.getLogger(__name__)

PREVIEW_IMAGE = 1
PREVIEW_IMAGE_WITH_METADATA = 4
IMAGE_FORMATS = {"image/jpeg": 1, "image/png": 2}
# The client feature flag (and /ws query parameter) that asks for step latents; see docs/latent-stream.md.
LATENTS_FLAG = "diffgraph_latents"
# ComfyUI sends these to everybody when the prompt came without a client_id; the rest only to the owner.
BROADCAST_WITHOUT_CLIENT = frozenset({"progress", "progress_state", "execution_interrupted", "preview"})
# A client that cannot keep up loses previews first; JSON messages are never dropped.
MAX_OUTBOX_FOR_PREVIEWS = 256
_CLIENT_ID = re.compile(r"^[A-Za-z0-9_\-]{1,128}$")
# `status` broadcasts (the queue size) are rate-limited by a token bucket: a few in a row go out at
# once, as ComfyUI sends one per queue change, but a burst of hundreds of submissions a second sends
# one per interval with the latest size instead of one per change to every client. The last change
# is always sent, and a client always gets the current size before any frame about a prompt.
STATUS_BURST = 4
STATUS_INTERVAL_S = 0.05


@dataclass
class Client:
    """One connected socket and what it negotiated."""

    sid: str
    ws: WebSocket
    flags: dict[str, Any] = field(default_factory=dict)
    outbox: asyncio.Queue[str | bytes] = field(default_factory=asyncio.Queue)

    latents_query: bool = False
    # The hub's status version this client was last sent (see Hub.status).
    status_version: int = 0

    @property
    def wants_metadata(self) -> bool:
        """True when the client understands type-4 preview frames."""
        return bool(self.flags.get("supports_preview_metadata"))

    @property
    def wants_latents(self) -> bool:
        """True when the client asked for every step's latent (feature flag or `?latents=1`)."""
        return self.latents_query or bool(self.flags.get(LATENTS_FLAG))

    def put(self, frame: str | bytes, droppable: bool = False) -> None:
        """Queue a frame for this client, dropping droppable frames when it lags far behind."""
        if droppable and self.outbox.qsize() > MAX_OUTBOX_FOR_PREVIEWS:
            return
        self.outbox.put_nowait(frame)


@dataclass
class Running:
    """The prompt being executed, remembered to resync a client that reconnects mid-run."""

    prompt_id: str
    client_id: str | None
    executing: dict[str, Any] | None = None
    progress_state: dict[str, Any] | None = None


def message(msg_type: str, data: Any) -> str:
    """A JSON text frame in ComfyUI's envelope."""
    return json.dumps({"type": msg_type, "data": data})


def preview_frames(image: bytes, image_type: str, meta: dict[str, Any]) -> tuple[bytes, bytes]:
    """(type-1 frame, type-4 frame) for one encoded preview picture."""
    legacy = struct.pack(">II", PREVIEW_IMAGE, IMAGE_FORMATS[image_type]) + image
    header = json.dumps({**meta, "image_type": image_type}).encode()
    with_meta = struct.pack(">II", PREVIEW_IMAGE_WITH_METADATA, len(header)) + header + image
    return legacy, with_meta


class Hub:
    """Connected websocket clients and the routing of server messages to them."""

    def __init__(self, server_flags: dict[str, Any]):
        self.server_flags = server_flags
        self.clients: dict[str, Client] = {}
        self.queue_remaining = 0
        # Prompts running now, by id (several at once when prompts run on a pool of workers).
        self.runs: dict[str, Running] = {}
        self.log_subscribers: set[str] = set()
        self._status_version = 0
        self._status_tokens = float(STATUS_BURST)
        self._status_refilled = time.monotonic()
        self._status_timer: asyncio.TimerHandle | None = None

    def status_data(self, sid: str | None = None) -> dict[str, Any]:
        """The `status` payload; `sid` only in the first frame of a connection."""
        data: dict[str, Any] = {"status": {"exec_info": {"queue_remaining": self.queue_remaining}}}
        if sid is not None:
            data["sid"] = sid
        return data

    async def serve(self, ws: WebSocket, client_id: str | None, latents: bool = False) -> None:
        """Run one connection: status with sid first, resync, feature flags, until it closes."""
        await ws.accept()
        sid = client_id if client_id and _CLIENT_ID.match(client_id) else uuid.uuid4().hex
        previous = self.clients.get(sid)
        client = Client(sid=sid, ws=ws, latents_query=latents)
        self.clients[sid] = client
        if previous is not None:
            previous.outbox.put_nowait(b"")  # tells its sender to close: the id now belongs to this socket
        sender = asyncio.create_task(self._send_loop(client))
        client.put(message("status", self.status_data(sid)))
        client.status_version = self._status_version
        self._resync(client)
        try:
            await self._receive_loop(client)
        finally:
            if self.clients.get(sid) is client:
                del self.clients[sid]
                self.log_subscribers.discard(sid)
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender

    async def _receive_loop(self, client: Client) -> None:
        first = True
        while True:
            try:
                frame = await client.ws.receive()
            except (WebSocketDisconnect, RuntimeError):
                return
            if frame["type"] == "websocket.disconnect":
                return
            text = frame.get("text")
            if not first or text is None:
                continue
            first = False  # ComfyUI reads only the first text frame
            try:
                body = loads_strict(text, "the first websocket frame")
            except InputRejected as exc:
                log.info("client %s: %s; ignored", client.sid, exc.message)
                continue
            if (
                isinstance(body, dict)
                and body.get("type") == "feature_flags"
                and isinstance(body.get("data"), dict)
            ):
                client.flags = body["data"]
                client.put(message("feature_flags", self.server_flags))

    async def _send_loop(self, client: Client) -> None:
        while True:
            frame = await client.outbox.get()
            try:
                if frame == b"":
                    await client.ws.close()
                    return
                if isinstance(frame, bytes):
                    await client.ws.send_bytes(frame)
                else:
                    await client.ws.send_text(frame)
            except (WebSocketDisconnect, RuntimeError, OSError) as exc:
                log.info("client %s went away while sending: %s", client.sid, exc)
                return

    def _resync(self, client: Client) -> None:
        """A client reconnecting mid-run gets the running node and the progress so far."""
        for running in list(self.runs.values()):
            if running.client_id != client.sid:
                continue
            if running.executing is not None:
                client.put(message("executing", running.executing))
            if running.progress_state is not None:
                client.put(message("progress_state", running.progress_state))

    def _targets(self, kind: str, client_id: str | None) -> list[Client]:
        if client_id:
            client = self.clients.get(client_id)
            return [client] if client else []
        return list(self.clients.values()) if kind in BROADCAST_WITHOUT_CLIENT else []

    # The methods below are called through Bridge from the worker and request threads.

    def status(self, queue_remaining: int) -> None:
        """Broadcast the queue size (every enqueue, dequeue and finish), rate-limited under bursts."""
        self.queue_remaining = queue_remaining
        self._status_version += 1
        if self._status_timer is None:
            self._broadcast_status()

    def _broadcast_status(self) -> None:
        """Send the current size to every client that lacks it, or schedule that when out of tokens."""
        self._status_timer = None
        now = time.monotonic()
        refill = (now - self._status_refilled) / STATUS_INTERVAL_S
        self._status_tokens = min(float(STATUS_BURST), self._status_tokens + refill)
        self._status_refilled = now
        if self._status_tokens < 1:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                loop = None  # called outside the server's loop (a unit test): nothing to defer to
            if loop is not None:
                delay = (1 - self._status_tokens) * STATUS_INTERVAL_S
                self._status_timer = loop.call_later(delay, self._broadcast_status)
                return
        self._status_tokens -= 1
        frame = message("status", self.status_data())
        for client in self.clients.values():
            if client.status_version != self._status_version:
                client.put(frame)
                client.status_version = self._status_version

    def _sync_status(self, client: Client) -> None:
        """Give one client the current queue size now if a deferred broadcast still owes it."""
        if client.status_version != self._status_version:
            client.put(message("status", self.status_data()))
            client.status_version = self._status_version

    def start(self, prompt_id: str, client_id: str | None) -> None:
        """A prompt began: remember it for resync."""
        self.runs[prompt_id] = Running(prompt_id, client_id)

    def stop(self, prompt_id: str) -> None:
        """A prompt ended."""
        self.runs.pop(prompt_id, None)

    @property
    def running(self) -> Running | None:
        """The most recently started running prompt, or None."""
        return next(reversed(self.runs.values()), None)

    def emit(self, msg_type: str, data: dict[str, Any], client_id: str | None) -> None:
        """Route one execution message to the prompt's client (or everybody, for some types)."""
        running = self.runs.get(str(data.get("prompt_id")))
        if running is not None:
            if msg_type == "executing":
                running.executing = data
            elif msg_type == "progress_state":
                running.progress_state = data
        frame = message(msg_type, data)
        for client in self._targets(msg_type, client_id):
            self._sync_status(client)
            client.put(frame)

    def subscribe_logs(self, client_id: str, enabled: bool) -> None:
        """Start or stop streaming new log lines to one client (the logs panel)."""
        if enabled:
            self.log_subscribers.add(client_id)
        else:
            self.log_subscribers.discard(client_id)

    def logs(self, entries: list[dict[str, str]], size: dict[str, int]) -> None:
        """Send new log lines to subscribed clients as ComfyUI's `logs` message."""
        if not self.log_subscribers:
            return
        frame = message("logs", {"entries": entries, "size": size})
        for sid in list(self.log_subscribers):
            client = self.clients.get(sid)
            if client is None:
                self.log_subscribers.discard(sid)
            else:
                client.put(frame)

    def _watchers(self, client_id: str | None) -> list[Client]:
        """Clients that would receive this prompt's previews; safe to call from another thread."""
        if client_id:
            client = self.clients.get(client_id)
            return [client] if client else []
        return list(self.clients.copy().values())

    def wants_previews(self, client_id: str | None, requested: bool) -> bool:
        """Whether any client would get this prompt's previews (lets the worker skip the work)."""
        return any(c.wants_metadata or requested for c in self._watchers(client_id))

    def wants_latents(self, client_id: str | None) -> bool:
        """Whether any client would get this prompt's step latents."""
        return any(c.wants_latents for c in self._watchers(client_id))

    def preview(
        self, image: bytes, image_type: str, meta: dict[str, Any], client_id: str | None, requested: bool
    ) -> None:
        """Type 4 to clients that negotiated metadata; type 1 only when the prompt asked for previews.

        A client that never asked gets no binary frame at all, as with ComfyUI's defaults: API
        clients written for ComfyUI's websocket image-save node take every binary frame as an output.
        """
        if meta.get("prompt_id") not in self.runs:
            return  # encoded after its prompt ended: it would cover the node's final output in the client
        legacy, with_meta = preview_frames(image, image_type, meta)
        for client in self._targets("preview", client_id):
            if client.wants_metadata:
                client.put(with_meta, droppable=True)
            elif requested:
                client.put(legacy, droppable=True)

    def latent(self, frame: bytes, client_id: str | None) -> None:
        """A step-latent frame to the clients among the prompt's targets that asked for latents."""
        for client in self._targets("preview", client_id):
            if client.wants_latents:
                client.put(frame, droppable=True)


class Bridge:
    """Hands calls from other threads to the event loop without blocking either side."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop

    def call(self, fn: Callable[..., None], *args: Any) -> None:
        """Schedule fn(*args) on the loop; dropped once the loop has shut down."""
        if self.loop.is_closed():
            return
        try:
            self.loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:
            log.debug("event loop closed; dropping %s", getattr(fn, "__name__", fn))
