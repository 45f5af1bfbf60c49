"""Fixtures that run the real server on 127.0.0.1 (port 0) in a thread, with stub nodes."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from websockets.sync.client import ClientConnection, connect

from engine import Environment, ModelPaths, Registry
from server.app import create_app
from server.main import bind_socket
from server.settings import ServerSettings
from tests.stub_pack.server_nodes import stub_registry

# Settings the web client would otherwise spend its first run on (tutorial dialog, online update check).
SEEDED_SETTINGS = {"Comfy.TutorialCompleted": True, "Comfy.Notification.ShowVersionUpdates": False}


class LiveServer:
    """A uvicorn server in a thread; `url` and `ws_url` point at it."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0):
        self.app = app
        self.sock = bind_socket(host, port)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://{host}:{self.port}"
        self.ws_url = f"ws://{host}:{self.port}/ws"
        config = uvicorn.Config(app, ws="websockets-sansio", lifespan="on", log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def start(self) -> LiveServer:
        """Start and wait until the app's startup finished."""
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        """Shut down cleanly (the worker re-queues a running prompt)."""
        self.server.should_exit = True
        self.thread.join(20)

    @property
    def state(self) -> Any:
        """The app's ServerState."""
        return self.app.state.server

    def client(self, **kwargs: Any) -> httpx.Client:
        """An HTTP client for this server."""
        return httpx.Client(base_url=self.url, timeout=20, **kwargs)

    def ws(
        self, client_id: str | None = None, flags: dict[str, Any] | None = None, **kwargs: Any
    ) -> ClientConnection:
        """A websocket; sends feature flags first when given."""
        url = self.ws_url + (f"?clientId={client_id}" if client_id else "")
        conn = connect(url, open_timeout=10, **kwargs)
        if flags is not None:
            conn.send(json.dumps({"type": "feature_flags", "data": flags}))
        return conn


@dataclass
class Folders:
    """The directories a test server uses."""

    base: Path

    @property
    def env(self) -> Environment:
        """An Environment over these folders."""
        return Environment(
            output_dir=self.base / "output",
            temp_dir=self.base / "temp",
            input_dir=self.base / "input",
            models=None,
            model_paths=ModelPaths(self.base / "models"),
        )

    def settings(self, **overrides: Any) -> ServerSettings:
        """ServerSettings with the user folder here and no web client unless asked for."""
        overrides.setdefault("serve_frontend", False)
        overrides.setdefault("user_dir", self.base / "user")
        return ServerSettings(**overrides)

    def seed_settings(self, values: dict[str, Any] | None = None) -> None:
        """Write the user's comfy.settings.json."""
        path = self.base / "user" / "default" / "comfy.settings.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values if values is not None else SEEDED_SETTINGS))


@pytest.fixture
def folders(tmp_path: Path) -> Folders:
    """Fresh folders per test."""
    return Folders(tmp_path)


ServerFactory = Callable[..., LiveServer]


@pytest.fixture
def make_server(folders: Folders) -> Iterator[ServerFactory]:
    """Start servers (stub registry unless given); all are stopped at the end of the test."""
    started: list[LiveServer] = []

    def factory(
        registry: Registry | None = None, env: Environment | None = None, **settings: Any
    ) -> LiveServer:
        app = create_app(
            registry or stub_registry(), env or folders.env, settings=folders.settings(**settings)
        )
        live = LiveServer(app).start()
        started.append(live)
        return live

    yield factory
    for live in started:
        live.stop()


@pytest.fixture
def server(make_server: ServerFactory) -> LiveServer:
    """One running stub server."""
    return make_server()


def wait_for(predicate: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    """Poll until predicate() is truthy; returns its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def wait_history(client: httpx.Client, prompt_id: str, timeout: float = 20.0) -> dict[str, Any]:
    """The history entry of prompt_id once it finished."""
    return wait_for(
        lambda: client.get(f"/history/{prompt_id}").json().get(prompt_id), timeout, f"history of {prompt_id}"
    )


def receive_until(conn: ClientConnection, stop: Callable[[Any], bool], timeout: float = 20.0) -> list[Any]:
    """Frames (JSON dicts, or bytes) until stop(frame) is true, inclusive."""
    frames: list[Any] = []
    deadline = time.monotonic() + timeout
    while True:
        raw = conn.recv(timeout=max(deadline - time.monotonic(), 0.01))
        frame = raw if isinstance(raw, bytes) else json.loads(raw)
        frames.append(frame)
        if stop(frame):
            return frames


def is_done(prompt_id: str) -> Callable[[Any], bool]:
    """Stop condition: the final `executing {node: null}` of prompt_id."""
    return lambda f: (
        isinstance(f, dict)
        and f["type"] == "executing"
        and f["data"]["node"] is None
        and f["data"].get("prompt_id") == prompt_id
    )
