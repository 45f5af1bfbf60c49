"""`diffgraph serve`: build the registry and environment here, then hand them to the server."""

from __future__ import annotations

import argparse
from typing import Any

from diffgraph.api import RegistryFactory
from engine import DiffgraphError


def add_parser(sub: Any) -> None:
    """Register `serve`; the server's own options are passed through."""
    p = sub.add_parser(
        "serve", help="start the ComfyUI-compatible HTTP/websocket server and web client", add_help=False
    )
    p.add_argument("args", nargs=argparse.REMAINDER, help="server options (--help lists them)")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace, registry_factory: RegistryFactory | None) -> int:
    """Start the server (wired when server/ exposes its entry point)."""
    raise DiffgraphError("the server is not available in this build yet", code="not_available")
