"""Composition root for subprocess server tests: `python -m tests.server.stub_serve --port 0 --base-dir D`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from engine import ModelPaths, Registry
from server.main import add_serve_arguments, run_serve
from tests.stub_pack.server_nodes import stub_registry


def build(model_paths: ModelPaths, input_dir: Path) -> Registry:
    """The stub registry, whatever the folders."""
    return stub_registry()


def main() -> int:
    """Parse the serve options and run with stub nodes and no model store."""
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    return run_serve(parser.parse_args(), build, make_models=lambda: None)


if __name__ == "__main__":
    sys.exit(main())
