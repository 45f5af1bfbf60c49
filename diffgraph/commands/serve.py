"""`diffgraph serve`: build the registry and environment here, then hand them to the server."""

from __future__ import annotations

from typing import Any

from diffgraph.api import RegistryFactory
from engine import DiffgraphError


def add_parser(sub: Any) -> None:
    """Register `serve` for the help listing; cli.main passes its arguments straight through."""
    sub.add_parser(
        "serve", help="start the ComfyUI-compatible HTTP/websocket server and web client", add_help=False
    )


def delegate(argv: list[str], registry_factory: RegistryFactory | None) -> int:
    """Start the server (wired when server/ exposes its entry point)."""
    raise DiffgraphError("the server is not available in this build yet", code="not_available")
