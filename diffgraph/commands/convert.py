"""`diffgraph convert`: UI-format workflow to API format, and API format back to a UI graph."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from diffgraph.commands import add_folder_options, open_session
from engine.formats.ui_transforms import QueueContext
from engine.formats.ui_workflow import is_ui_format
from engine.formats.workflow import parse_json, save_api
from engine.registry import RegistryFactory


def add_parser(sub: Any) -> None:
    """Register `convert`."""
    p = sub.add_parser("convert", help="convert UI-format JSON to API format, or API format to a UI graph")
    p.add_argument("workflow", help="workflow JSON (either format), or a PNG/video with one embedded")
    p.add_argument("-o", "--output", type=Path, help="write here instead of stdout")
    p.add_argument(
        "--to", choices=("auto", "api", "ui"), default="auto", help="target format; auto = the other one"
    )
    p.add_argument(
        "--now",
        type=local_time,
        metavar="YYYY-MM-DDTHH:MM:SS",
        help="local time for %%date:...%% tokens in filename prefixes (default: the current time)",
    )
    p.add_argument(
        "--choice-seed",
        type=int,
        metavar="N",
        help="pick {a|b} options in dynamic-prompt text reproducibly (default: at random, as the web client)",
    )
    add_folder_options(p, output=False)
    p.set_defaults(handler=handle)


def local_time(text: str) -> datetime:
    """An ISO date-time for --now; argparse turns the error into a usage message."""
    try:
        return datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected a time like 2025-01-31T12:00:00, got {text!r}") from exc


def source_is_ui(path: Path) -> bool:
    """True when the file is UI-format JSON (media files count as API: they carry the exact prompt)."""
    if path.suffix.lower() != ".json":
        return False
    return is_ui_format(parse_json(path.read_text(encoding="utf-8"), str(path)))


def handle(args: argparse.Namespace, registry_factory: RegistryFactory | None) -> int:
    """Convert and write the result."""
    path = Path(args.workflow)
    target = args.to if args.to != "auto" else ("api" if path.is_file() and source_is_ui(path) else "ui")
    with open_session(args, registry_factory) as session:
        workflow = session.load(path, QueueContext.pinned(args.now, args.choice_seed))
        if target == "api":
            if args.output:
                save_api(workflow.prompt, args.output)
                return 0
            text = json.dumps(workflow.prompt, indent=2)
        else:
            from engine.formats.ui_workflow import api_to_ui

            if workflow.ui is not None and args.to == "auto" and path.suffix.lower() != ".json":
                ui = workflow.ui  # a media file carries the original UI graph: hand it back unchanged
            else:
                ui = api_to_ui(workflow.prompt, session.registry.object_info())
            text = json.dumps(ui, indent=2)
    if args.output:
        args.output.write_text(text + "\n", encoding="utf-8")
    else:
        sys.stdout.write(text + "\n")
    return 0
