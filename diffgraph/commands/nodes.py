"""`diffgraph nodes`: list the registered nodes, or print one node's schema (ComfyUI's object_info)."""

from __future__ import annotations

import argparse
import difflib
from typing import Any

from diffgraph.commands import add_folder_options, open_session, print_json
from engine import DiffgraphError
from engine.registry import RegistryFactory


def add_parser(sub: Any) -> None:
    """Register `nodes`."""
    p = sub.add_parser("nodes", help="list nodes, or print one node's schema as JSON")
    p.add_argument("class_type", nargs="?", help="a node class_type, e.g. KSampler")
    p.add_argument("--json", action="store_true", help="print the whole object_info as JSON")
    add_folder_options(p, output=False)
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace, registry_factory: RegistryFactory | None) -> int:
    """Print the node list (by category) or one schema."""
    with open_session(args, registry_factory) as session:
        registry = session.registry
        if args.class_type:
            if args.class_type not in registry:
                close = difflib.get_close_matches(args.class_type, list(registry), n=5, cutoff=0.5)
                hint = f"; did you mean {', '.join(close)}?" if close else "; `diffgraph nodes` lists them"
                raise DiffgraphError(f"no node {args.class_type!r}{hint}", code="unknown_node")
            print_json(registry.node_info(args.class_type))
            return 0
        info = registry.object_info()
    if args.json:
        print_json(info)
        return 0
    rows = sorted(info.values(), key=lambda n: (n["category"], n["name"]))
    width = max((len(n["name"]) for n in rows), default=0)
    for node in rows:
        display = node["display_name"] if node["display_name"] != node["name"] else ""
        print(f"{node['name']:<{width}}  {node['category']:<24}  {display}".rstrip())
    return 0
