"""`diffgraph make-checkpoint`: random-weight checkpoints in real layouts (the model stack's tool)."""

from __future__ import annotations

from typing import Any

from engine.registry import RegistryFactory


def add_parser(sub: Any) -> None:
    """Register `make-checkpoint` for the help listing; cli.main passes its arguments straight through."""
    sub.add_parser(
        "make-checkpoint",
        help="write a random-weight checkpoint (e.g. --arch sd15 --size tiny --seed 0 OUT.safetensors)",
        add_help=False,
    )


def delegate(argv: list[str], registry_factory: RegistryFactory | None) -> int:
    """Run nodes.diffusion.make_checkpoint.main with the remaining arguments."""
    from nodes.diffusion.make_checkpoint import main

    return int(main(argv) or 0)
