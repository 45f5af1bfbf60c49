"""`diffgraph run`: one workflow, a seed sweep or a batch file, in one process that keeps the cache."""

from __future__ import annotations

import argparse
import sys
import threading
import time
from typing import Any

from diffgraph import demo
from diffgraph.api import RunResult, Session, WorkflowInvalid
from diffgraph.commands import (
    add_folder_options,
    add_speed_options,
    apply_speed_options,
    open_session,
    print_json,
    run_ray,
)
from diffgraph.prefetch import prefetch_workflow_models
from diffgraph.progress import PlainProgress, make_progress
from diffgraph.report import failed_json, item_json, run_json, validation_text
from diffgraph.sweep import Item, build_items, item_workflow, parse_seeds, read_batch, seed_targets
from diffgraph.workflow import Workflow, parse_assignment
from engine import CancelToken, DiffgraphError, ModelPaths
from engine.model_paths import models_dir_default
from engine.registry import RegistryFactory

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def add_parser(sub: Any) -> None:
    """Register `run`."""
    p = sub.add_parser(
        "run",
        help="run a workflow (API or UI JSON, or a PNG/video carrying one), optionally over seeds or a batch",
        description="Run a workflow headless. Only nodes whose inputs changed since the previous item run.",
    )
    p.add_argument("workflow", help="workflow JSON (API or UI format), or a PNG/WebP/video with one embedded")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NODE.INPUT=VALUE",
        help="override an input; NODE is a node id, a title or a class_type occurring once; VALUE is JSON "
        'when it parses (5, 7.5, true, "text"), else a string. Repeatable.',
    )
    add_folder_options(p)
    add_speed_options(p)
    p.add_argument("--seeds", help="seed sweep, e.g. 1-100 or 1,5,9-12: one run per seed")
    p.add_argument(
        "--seed-input",
        action="append",
        default=[],
        metavar="NODE.INPUT",
        help="input(s) the sweep sets; default every constant seed / noise_seed input (every sampler)",
    )
    p.add_argument("--batch", help='batch file: JSON lines ({"NODE.INPUT": value} per line) or CSV (.csv)')
    p.add_argument("--force", action="store_true", help="ignore the cache: run every node of every item")
    p.add_argument("--json", action="store_true", help="print a machine-readable result on stdout")
    p.add_argument(
        "--progress",
        choices=("auto", "rich", "plain", "none"),
        default="auto",
        help="progress display on stderr: bars on a terminal, plain lines otherwise (auto)",
    )
    demo_group = p.add_mutually_exclusive_group()
    demo_group.add_argument(
        "--demo",
        dest="demo",
        action="store_const",
        const="on",
        default="auto",
        help="when the workflow's checkpoint is missing, make and use a tiny RANDOM-WEIGHT demo checkpoint "
        "(images are noise, at most 256 px a side) to show the whole pipeline working; without this flag "
        "that happens only when models/checkpoints/ has no checkpoint at all, always with a notice",
    )
    demo_group.add_argument(
        "--no-demo", dest="demo", action="store_const", const="off", help="never use the demo checkpoint"
    )
    run_ray.add_arguments(p)
    p.set_defaults(handler=handle)


def execute_interruptible(
    session: Session, workflow: Workflow, validation: Any, force: bool, sink: Any
) -> RunResult:
    """Run in a worker thread so Ctrl-C cancels cleanly between and inside nodes.

    The main thread waits on an Event rather than Thread.join: a KeyboardInterrupt landing inside
    join() can leave the thread marked finished while it still runs (CPython's bpo-45274 handling).
    A second Ctrl-C while the node winds down gives up waiting.
    """
    cancel = CancelToken()
    done = threading.Event()
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["result"] = session.execute(workflow, validation, force=force, sink=sink, cancel=cancel)
        except BaseException as exc:  # handed to the main thread and re-raised there
            box["error"] = exc
        finally:
            done.set()

    try:
        threading.Thread(target=work, name="diffgraph-run", daemon=True).start()
        while not done.wait(0.1):
            pass
    except KeyboardInterrupt:
        cancel.cancel()
        while not done.wait(0.1):
            pass
    if "error" in box:
        raise box["error"]
    return box["result"]


def run_item(
    session: Session,
    base: Workflow,
    item: Item,
    targets: list[tuple[str, str]],
    args: Any,
    progress: PlainProgress,
) -> dict[str, Any]:
    """Run one item and describe it for --json; failures are reported, never raised."""
    if item.error:
        message = f"line {item.line}: {item.error}"
        progress.end_item(False, message)
        return item_json(item, "invalid", None, None, {"type": "bad_batch_line", "message": message})
    try:
        workflow = item_workflow(base, item, targets)
        validation = session.prepare(workflow)
    except WorkflowInvalid as exc:
        text = validation_text(workflow.prompt, exc.validation.error, exc.node_errors, session.models_dir)
        progress.end_item(False, text)
        error = {**(exc.validation.error or {}), "node_errors": exc.node_errors}
        return item_json(item, "invalid", workflow.prompt, None, error)
    except DiffgraphError as exc:
        message = (f"line {item.line}: " if item.line else "") + exc.message
        progress.end_item(False, message)
        return item_json(item, "invalid", None, None, {"type": exc.code, "message": message})
    progress.start_item(item.label, item.index, workflow.prompt, validation.graph.number_of_nodes())
    result = execute_interruptible(session, workflow, validation, args.force, progress)
    if result.ok:
        files = ", ".join(str(p) for p in result.all_files()) or "no files"
        progress.end_item(
            True, f"{len(result.executed)} ran, {len(result.cached)} cached, {result.seconds:.1f}s: {files}"
        )
    elif result.status == "interrupted":
        progress.end_item(False, "interrupted (Ctrl-C); the rest of the batch does not run")
    else:
        progress.end_item(False, result.error_message())
    return item_json(item, result.status, workflow.prompt, result, result.error)


def handle(args: argparse.Namespace, registry_factory: RegistryFactory | None) -> int:
    """Run; with --json, a run that cannot start still prints a JSON document (then the error)."""
    try:
        return run_all(args, registry_factory)
    except DiffgraphError as exc:
        if args.json:
            print_json(failed_json(args.workflow, {"type": exc.code, "message": exc.message}))
        raise


def run_all(args: argparse.Namespace, registry_factory: RegistryFactory | None) -> int:
    """Load, apply overrides, expand sweeps and batches, run every item, report."""
    started = time.perf_counter()
    apply_speed_options(args)
    base_overrides = {}
    for text in args.set:
        node_ref, input_name, value = parse_assignment(text)
        base_overrides[f"{node_ref}.{input_name}"] = value
    seeds = parse_seeds(args.seeds) if args.seeds else None
    batch = read_batch(args.batch) if args.batch else None
    if args.ray is not None:
        return run_ray.run_distributed(args, registry_factory, base_overrides, build_items({}, batch, seeds))
    progress = make_progress(args.progress)
    # The kernel reads the named checkpoints from disk while torch and the node library import.
    prefetch_workflow_models(args.workflow, ModelPaths(args.models_dir or models_dir_default()))
    with progress.status("starting: loading torch and the node library"):
        session = open_session(args, registry_factory)
    with session:
        # --set applies to every item; a bad one fails the whole run before anything starts.
        base = session.load(args.workflow).apply(base_overrides)
        demo_plan = demo.DemoPlan()
        if demo.choose(session, base, args.demo):
            demo_plan = demo.prepare(session, base, sys.stderr, explicit=args.demo == "on")
        targets = seed_targets(base, args.seed_input) if seeds else []
        items = build_items({}, batch, seeds)  # --set is already in base
        progress.start_batch(len(items))
        reports = []
        try:
            for item in items:
                reports.append(run_item(session, base, item, targets, args, progress))
                if reports[-1]["status"] == "interrupted":
                    break
        finally:
            progress.close()
    return finish(args, reports, time.perf_counter() - started, len(items), demo_plan)


def finish(
    args: argparse.Namespace,
    reports: list[dict[str, Any]],
    seconds: float,
    total: int,
    demo_plan: demo.DemoPlan,
) -> int:
    """Print the result (JSON or file paths) and choose the exit code."""
    if args.json:
        print_json(run_json(args.workflow, reports, seconds, demo_plan.replaced, demo_plan.resized, total))
    else:
        for report in reports:
            for path in report["files"]:
                print(path)
    failed = sum(1 for r in reports if r["status"] != "success")
    if total > 1:
        not_run = f", {total - len(reports)} not run" if len(reports) < total else ""
        print(
            f"{total} items: {len(reports) - failed} succeeded, {failed} failed{not_run} ({seconds:.1f}s)",
            file=sys.stderr,
        )
    if any(r["status"] == "interrupted" for r in reports):
        return EXIT_INTERRUPTED
    if total == 1 and failed and reports[0]["status"] == "invalid":
        return EXIT_USAGE
    return EXIT_FAILED if failed else EXIT_OK
