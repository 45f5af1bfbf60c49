"""One module per `diffgraph` subcommand; each has `add_parser(subparsers)` setting `handler`."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from diffgraph.api import Session
from diffgraph.custom_nodes import add_custom_node_options, custom_node_folders
from engine.model_paths import MODELS_DIR_ENV, models_dir_default
from engine.registry import RegistryFactory


def add_folder_options(parser: argparse.ArgumentParser, output: bool = True) -> None:
    """--models-dir and --input-dir (and --out): the folders a session works in."""
    parser.add_argument(
        "--models-dir",
        type=Path,
        default=None,
        help=f"models folder in ComfyUI's layout (checkpoints/, vae/, loras/...); default ${MODELS_DIR_ENV} "
        "or ./models",
    )
    parser.add_argument(
        "--input-dir", type=Path, default=Path("input"), help="input files (LoadImage); default ./input"
    )
    add_custom_node_options(parser)
    if output:
        parser.add_argument(
            "--out",
            "--output-dir",
            dest="out",
            type=Path,
            default=Path("output"),
            help="where outputs are written; default ./output",
        )


# Read by engine.devices (precision) and nodes.diffusion.denoiser_runtime (compile) when models load;
# named here as strings so parsing the command line does not import torch.
PRECISION_ENV = "DIFFGRAPH_PRECISION"
COMPILE_ENV = "DIFFGRAPH_COMPILE"


def add_speed_options(parser: argparse.ArgumentParser) -> None:
    """--precision and --compile: how the denoiser computes (same as $DIFFGRAPH_PRECISION / _COMPILE)."""
    parser.add_argument(
        "--precision",
        choices=("exact", "fast"),
        default=None,
        help="exact (default): fp32 on CPU, results as before; fast: the denoiser in bf16 on CPUs with "
        f"native bf16 (AVX-512 BF16/AMX), fp32 elsewhere; results differ slightly. Default ${PRECISION_ENV}",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the denoiser: each new latent size or prompt length compiles once (minutes "
        f"on a small CPU), later steps run faster; same as {COMPILE_ENV}=1",
    )


def apply_speed_options(args: argparse.Namespace) -> None:
    """Hand --precision / --compile to the model loaders of this process (and its worker processes)."""
    if getattr(args, "precision", None):
        os.environ[PRECISION_ENV] = args.precision
    if getattr(args, "compile", False):
        os.environ[COMPILE_ENV] = "1"


def open_session(args: argparse.Namespace, registry_factory: RegistryFactory | None) -> Session:
    """A Session over the folders named on the command line."""
    models_dir = args.models_dir or models_dir_default()
    return Session(
        models_dir=models_dir,
        output_dir=getattr(args, "out", None) or Path("output"),
        input_dir=args.input_dir,
        registry_factory=registry_factory,
        custom_nodes=custom_node_folders(args, models_dir),
    )


def print_json(data: Any) -> None:
    """Write a JSON document to stdout (paths and other objects as strings)."""
    json.dump(data, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")
    sys.stdout.flush()
