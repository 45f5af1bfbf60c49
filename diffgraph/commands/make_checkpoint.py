"""`diffgraph make-checkpoint`: random-weight checkpoints in real layouts (the model stack's tool)."""

from __future__ import annotations

import argparse
from typing import Any

from diffgraph.api import RegistryFactory


def add_parser(sub: Any) -> None:
    """Register `make-checkpoint`; every argument goes to the model stack's own parser."""
    p = sub.add_parser(
        "make-checkpoint",
        help="write a random-weight checkpoint (e.g. --arch sd15 --size tiny --seed 0 OUT.safetensors)",
        add_help=False,
    )
    p.add_argument(
        "args", nargs=argparse.REMAINDER, help="arguments of the checkpoint maker (--help lists them)"
    )
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace, registry_factory: RegistryFactory | None) -> int:
    """Delegate to nodes.diffusion.make_checkpoint.main."""
    from nodes.diffusion.make_checkpoint import main

    return int(main(list(args.args)) or 0)
