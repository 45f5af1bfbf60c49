"""`diffgraph serve`: the composition root builds the node registry; the server does the rest."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from diffgraph.api import default_registry_factory
from diffgraph.commands import add_speed_options, apply_speed_options
from diffgraph.custom_nodes import add_custom_node_options, custom_node_folders, load_packs
from engine import Environment, ModelPaths, Registry
from engine.registry import RegistryFactory


def add_parser(sub: Any) -> None:
    """Register `serve` for the help listing; cli.main hands its arguments to `delegate`."""
    sub.add_parser(
        "serve", help="start the ComfyUI-compatible HTTP/websocket server and web client", add_help=False
    )


def with_custom_nodes(factory: RegistryFactory, args: argparse.Namespace) -> RegistryFactory:
    """A registry factory that also loads the custom-node packs the serve options name."""
    base: Path = args.base_dir

    def build(model_paths: ModelPaths, input_dir: Path) -> Registry:
        registry = factory(model_paths, input_dir)
        env = Environment(
            output_dir=args.output_dir or base / "output",
            temp_dir=args.temp_dir or base / "temp",
            input_dir=input_dir,
            model_paths=model_paths,
        )
        load_packs(registry, custom_node_folders(args, model_paths.root), env)
        return registry

    return build


def delegate(argv: list[str], registry_factory: RegistryFactory | None) -> int:
    """Parse the server's own options (imported only now: the web stack is heavy) and serve."""
    from diffgraph.distributed import serve as ray_options
    from server.main import add_serve_arguments, run_serve

    parser = argparse.ArgumentParser(
        prog="diffgraph serve", description="Serve the ComfyUI-compatible API and the web client."
    )
    add_serve_arguments(parser)
    add_custom_node_options(parser)
    add_speed_options(parser)
    ray_options.add_arguments(parser)
    args = parser.parse_args(argv)
    apply_speed_options(args)
    factory = with_custom_nodes(registry_factory or default_registry_factory, args)
    if args.ray is None:
        return run_serve(args, factory)
    # The workers build their registries with the same factory (custom packs from the same folders).
    make_slots = ray_options.slot_factory(args, factory)
    try:
        return run_serve(args, factory, make_slots=make_slots)
    except KeyboardInterrupt:
        # uvicorn has already shut down; it re-raises Ctrl-C to the handler Ray's driver installed.
        return 0
    finally:
        make_slots.close()
