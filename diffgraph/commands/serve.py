"""`diffgraph serve`: the composition root builds the node registry; the server does the rest."""

from __future__ import annotations

import argparse
from typing import Any

from diffgraph.api import default_registry_factory
from engine.registry import RegistryFactory


def add_parser(sub: Any) -> None:
    """Register `serve` for the help listing; cli.main hands its arguments to `delegate`."""
    sub.add_parser(
        "serve", help="start the ComfyUI-compatible HTTP/websocket server and web client", add_help=False
    )


def delegate(argv: list[str], registry_factory: RegistryFactory | None) -> int:
    """Parse the server's own options (imported only now: the web stack is heavy) and serve."""
    from server.main import add_serve_arguments, run_serve

    parser = argparse.ArgumentParser(
        prog="diffgraph serve", description="Serve the ComfyUI-compatible API and the web client."
    )
    add_serve_arguments(parser)
    return run_serve(parser.parse_args(argv), registry_factory or default_registry_factory)
