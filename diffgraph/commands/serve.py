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
    from diffgraph.distributed import serve as ray_options
    from server.main import add_serve_arguments, run_serve

    parser = argparse.ArgumentParser(
        prog="diffgraph serve", description="Serve the ComfyUI-compatible API and the web client."
    )
    add_serve_arguments(parser)
    ray_options.add_arguments(parser)
    args = parser.parse_args(argv)
    factory = registry_factory or default_registry_factory
    if args.ray is None:
        return run_serve(args, factory)
    make_slots = ray_options.slot_factory(args, factory)
    try:
        return run_serve(args, factory, make_slots=make_slots)
    except KeyboardInterrupt:
        # uvicorn has already shut down; it re-raises Ctrl-C to the handler Ray's driver installed.
        return 0
    finally:
        make_slots.close()
