"""The `diffgraph` command: argument parsing and dispatch to one small module per subcommand.

Exit codes: 0 success; 1 a node failed at run time (or any batch item failed, or `validate` found
problems); 2 bad usage or a workflow that cannot run at all (nothing ran); 130 interrupted (Ctrl-C);
141 stdout closed early (the reader of a pipe, such as `head`, quit), as other Unix tools do.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from diffgraph.commands import convert, make_checkpoint, nodes, run, serve, validate
from engine import DiffgraphError
from engine.registry import RegistryFactory

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141

COMMANDS = (run, validate, convert, nodes, serve, make_checkpoint)
PASSTHROUGH = {"serve": serve, "make-checkpoint": make_checkpoint}


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="diffgraph",
        description="Run, check and serve diffusion node-graph workflows (ComfyUI-compatible).",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log details (and tracebacks) to stderr")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None, *, registry_factory: RegistryFactory | None = None) -> int:
    """Console-script entry point; `registry_factory` lets tests run the CLI on stub nodes."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in PASSTHROUGH:
        # These hand every argument (--help included) to another component's own parser.
        return int(PASSTHROUGH[argv[0]].delegate(argv[1:], registry_factory) or 0)
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(args.handler(args, registry_factory))
    except DiffgraphError as exc:
        print(f"error [{exc.code}]: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        silence_stdout()
        return EXIT_BROKEN_PIPE


def silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not fail on the closed pipe."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return  # not a real file (captured in tests): nothing will flush to a closed pipe
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)
