"""`diffgraph make-checkpoint`: random-weight checkpoints in real layouts (the model stack's tool)."""

from __future__ import annotations

from typing import Any

from engine.registry import RegistryFactory


def add_parser(sub: Any) -> None:
    """Register `make-checkpoint` for the help listing; cli.main passes its arguments straight through."""
    sub.add_parser(
        "make-checkpoint",
        help="write a random-weight checkpoint (e.g. --arch sd15 --size tiny --seed 0 OUT.safetensors), or with "
        "--kind controlnet|controlnet-diffusers|controlnet-union|control-lora|t2i-adapter a control file for the family",
        add_help=False,
    )


def delegate(argv: list[str], registry_factory: RegistryFactory | None) -> int:
    """Run the checkpoint writer, or the control-file writer for a control --kind, with the remaining arguments."""
    from nodes.diffusion import controlnet_files, make_checkpoint

    kinds = [a.split("=", 1)[1] for a in argv if a.startswith("--kind=")]
    kinds += [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--kind"]
    if any(k in controlnet_files.CONTROL_KINDS for k in kinds):
        return int(controlnet_files.main(argv) or 0)
    return int(make_checkpoint.main(argv) or 0)
