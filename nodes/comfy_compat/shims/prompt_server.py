"""ComfyUI's `server` module for packs: `PromptServer.instance` with send_sync and a route table.

Messages a running node sends reach the clients of its prompt as websocket messages of the type it
names. Routes a pack declares are recorded here; the loader wraps their aiohttp handlers
(nodes.comfy_compat.pack_routes) and the server serves them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from engine import CustomMessage
from nodes.comfy_compat.runtime import CompatState, current


class RouteTable:
    """Collects the (method, path, handler) routes a pack declares with decorators."""

    def __init__(self) -> None:
        self.routes: list[tuple[str, str, Callable[..., Any]]] = []

    def _method(self, method: str) -> Callable[[str], Callable[[Callable[..., Any]], Callable[..., Any]]]:
        def register(path: str, **_: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
            def decorate(handler: Callable[..., Any]) -> Callable[..., Any]:
                self.routes.append((method, path, handler))
                return handler

            return decorate

        return register

    def __getattr__(self, name: str) -> Any:
        if name in ("get", "post", "put", "patch", "delete", "head", "route"):
            return self._method(name.upper())
        raise AttributeError(name)

    def static(self, prefix: str, path: str, **_: Any) -> None:
        """Static folders are recorded like routes."""
        self.routes.append(("STATIC", prefix, lambda: path))


class PromptServer:
    """The running server as packs see it."""

    instance: PromptServer

    def __init__(self) -> None:
        self.routes = RouteTable()
        self.client_id: str | None = None
        self.last_node_id: str | None = None
        self.supports = ["custom_nodes_from_web"]

    def send_sync(self, event: str, data: dict[str, Any], sid: str | None = None) -> None:
        """Send a message to the clients of the running prompt (or to everybody outside a run)."""
        ctx = current()
        if ctx is not None:
            ctx._emit(CustomMessage(message_type=event, payload=data))
        elif CompatState.broadcast is not None:
            CompatState.broadcast(event, data)

    async def send(self, event: str, data: dict[str, Any], sid: str | None = None) -> None:
        """Async form of send_sync."""
        self.send_sync(event, data, sid)

    def add_on_prompt_handler(self, handler: Callable[..., Any]) -> None:
        """Prompt rewriting hooks are refused: they would change workflows behind validation."""
        raise NotImplementedError("PromptServer.add_on_prompt_handler is not supported by diffgraph")


PromptServer.instance = PromptServer()
