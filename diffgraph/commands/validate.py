"""`diffgraph validate`: check a workflow without running it; node errors as text or JSON."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from diffgraph.commands import add_folder_options, open_session, print_json
from diffgraph.report import validation_text
from diffgraph.workflow import describe_node, parse_assignment
from engine import DiffgraphError
from engine.registry import RegistryFactory


def add_parser(sub: Any) -> None:
    """Register `validate`."""
    p = sub.add_parser("validate", help="check a workflow without running it (exit 1 when it has problems)")
    p.add_argument("workflow", help="workflow JSON (API or UI format), or a PNG/video with one embedded")
    p.add_argument(
        "--set", action="append", default=[], metavar="NODE.INPUT=VALUE", help="override an input first"
    )
    p.add_argument("--json", action="store_true", help="print {ok, error, node_errors, outputs} as JSON")
    add_folder_options(p, output=False)
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace, registry_factory: RegistryFactory | None) -> int:
    """Validate and report every problem at once; exit 0 only when the whole workflow is valid."""
    with open_session(args, registry_factory) as session:
        try:
            workflow = session.load(args.workflow)
            for text in args.set:
                workflow.set(*parse_assignment(text))
        except DiffgraphError as exc:
            if args.json:
                error = {"type": exc.code, "message": exc.message}
                print_json({"ok": False, "runnable": False, "error": error, "node_errors": {}, "outputs": []})
            raise
        result = session.validate(workflow)
        models_dir = session.models_dir
    clean = result.ok and not result.node_errors
    if args.json:
        print_json(
            {
                "ok": clean,
                "runnable": result.ok,
                "error": result.error,
                "node_errors": result.node_errors,
                "outputs": result.outputs,
            }
        )
    elif clean:
        outputs = ", ".join(describe_node(o, workflow.prompt[o]) for o in result.outputs)
        print(f"ok: {len(workflow.prompt)} nodes; outputs {outputs}")
    else:
        headline = "partly valid: the other outputs would run" if result.ok else None
        error = result.error or {"message": headline}
        print(validation_text(workflow.prompt, error, result.node_errors, models_dir), file=sys.stderr)
    return 0 if clean else 1
