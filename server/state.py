"""What every route handler reaches through `request.app.state.server`."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

from engine.context import Environment
from engine.precision import PRECISION_KEY, PRECISIONS, default_precision
from engine.registry import Registry
from server.hub import LATENTS_FLAG, Bridge, Hub
from server.logs import LogBuffer
from server.pool import WorkerPool
from server.settings import ServerSettings
from server.store import JobStore
from server.templates import TemplateLibrary
from server.worker import Worker


@dataclass
class ServerState:
    """Registry, environment, settings and the live parts (store, hub, worker) of one server."""

    registry: Registry
    env: Environment
    settings: ServerSettings
    store: JobStore
    hub: Hub
    frontend_root: Path | None
    bridge: Bridge | None = None
    worker: Worker | WorkerPool | None = None
    # Executor slots that run prompts elsewhere (a Ray pool), several at once; None: one local worker.
    slots: list[Any] | None = None
    # Serialises read-modify-write of the settings file and user data moves.
    user_lock: threading.Lock = field(default_factory=threading.Lock)
    logs: LogBuffer = field(default_factory=LogBuffer)
    templates: TemplateLibrary = field(init=False)

    def __post_init__(self) -> None:
        self.templates = TemplateLibrary(self.registry, self.env.model_paths)

    @property
    def user_root(self) -> Path:
        """The single user's data folder (settings, workflows, templates)."""
        return self.settings.user_dir / "default"

    def server_flags(self) -> dict[str, Any]:
        """Feature flags the server advertises (never progress-text metadata: not implemented)."""
        return {
            "supports_preview_metadata": True,
            "max_upload_size": self.settings.max_upload_size,
            LATENTS_FLAG: True,
            # The precision prompts run in unless their extra_data names one (engine.precision).
            PRECISION_KEY: {"default": default_precision(self.env.models), "choices": list(PRECISIONS)},
        }


def server_state(request: Request) -> ServerState:
    """The ServerState of the app handling this request."""
    return request.app.state.server


def error_response(status: int, code: str, message: str, details: str = "", **extra: Any) -> JSONResponse:
    """A JSON error in ComfyUI's shape: {"error": {type, message, details, extra_info}}."""
    body = {"error": {"type": code, "message": message, "details": details, "extra_info": extra}}
    return JSONResponse(body, status_code=status)
