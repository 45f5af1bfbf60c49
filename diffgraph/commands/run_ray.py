"""`diffgraph run --ray`: the items of a sweep or batch on a pool of Ray workers, files in --out."""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from diffgraph.api import RunResult, Session
from diffgraph.commands import open_session, print_json
from diffgraph.distributed.batch import Batch, BatchItem, ItemResult
from diffgraph.distributed.outputs import STAGING, OutputCommitter
from diffgraph.distributed.pool import Pool, PoolOptions
from diffgraph.distributed.progress import BatchDisplay, make_display
from diffgraph.progress import make_progress
from diffgraph.report import item_json, run_json, validation_text
from diffgraph.sweep import Item, item_workflow, seed_targets
from engine import DiffgraphError
from engine.registry import RegistryFactory

EXIT_OK, EXIT_FAILED, EXIT_INTERRUPTED = 0, 1, 130


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """--ray, --workers, --worker-cpus and --shared-out on `diffgraph run`."""
    parser.add_argument(
        "--ray",
        nargs="?",
        const="local",
        metavar="ADDRESS",
        help="run the items on a Ray cluster: no ADDRESS starts a local one, `auto` joins the cluster this "
        "machine belongs to, HOST:PORT joins that head node (give the workflow before --ray)",
    )
    parser.add_argument(
        "--workers", type=int, help="with --ray: how many workers (default one per GPU, else one per 4 CPUs)"
    )
    parser.add_argument("--worker-cpus", type=float, help="with --ray: CPUs each worker reserves")
    parser.add_argument(
        "--shared-out",
        action="store_true",
        help="with --ray: --out is on a folder every worker sees (workers write there; no bytes travel back)",
    )


def prepare_items(
    session: Session, args: argparse.Namespace, base_overrides: dict[str, Any], items: list[Item]
) -> tuple[dict[int, dict[str, Any]], dict[int, dict[str, Any]], dict[str, Any]]:
    """(prompt per item, --json report per item that cannot even be built, the shared extra_data)."""
    base = session.load(args.workflow).apply(base_overrides)
    targets = seed_targets(base, args.seed_input) if args.seeds else []
    prompts: dict[int, dict[str, Any]] = {}
    early: dict[int, dict[str, Any]] = {}
    for item in items:
        if item.error:
            message = f"line {item.line}: {item.error}"
            early[item.index] = item_json(
                item, "invalid", None, None, {"type": "bad_batch_line", "message": message}
            )
            continue
        try:
            prompts[item.index] = item_workflow(base, item, targets).prompt
        except DiffgraphError as exc:
            message = (f"line {item.line}: " if item.line else "") + exc.message
            early[item.index] = item_json(item, "invalid", None, None, {"type": exc.code, "message": message})
    return prompts, early, base.extra_data()


def pool_options(
    args: argparse.Namespace, session: Session, registry_factory: RegistryFactory | None, out: Path
) -> PoolOptions:
    """The pool the command line asks for, over this session's folders (absolute: workers start elsewhere)."""
    return PoolOptions(
        address=args.ray,
        workers=args.workers,
        worker_cpus=args.worker_cpus,
        models_dir=str(session.models_dir.resolve()),
        input_dir=str(Path(args.input_dir).resolve()),
        registry_factory=registry_factory,
        shared_staging=str(out / STAGING) if args.shared_out else None,
    )


def run_distributed(
    args: argparse.Namespace,
    registry_factory: RegistryFactory | None,
    base_overrides: dict[str, Any],
    items: list[Item],
) -> int:
    """Build every item's prompt here, run them on the pool, report as a local run does."""
    refuse_demo(args)
    started = time.perf_counter()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    progress = make_progress(args.progress)
    with progress.status("starting: loading the workflow, connecting to Ray, starting the workers"):
        session = open_session(args, registry_factory)
        prompts, early, extra = prepare_items(session, args, base_overrides, items)
        try:
            pool = Pool.start(pool_options(args, session, registry_factory, out))
        except BaseException:
            session.close()
            raise
    labels = {item.index: item.label for item in items}
    by_index = {item.index: item for item in items}
    display = make_display(args.progress, len(items), labels, [w.name for w in pool.workers])
    reports: dict[int, dict[str, Any]] = dict(early)
    for index, report in early.items():
        display.result(index, False, report["error"]["message"] if report.get("error") else "invalid")

    def on_result(result: ItemResult) -> None:
        item = by_index[result.index]
        reports[result.index] = item_report(item, prompts[result.index], result, session.models_dir, display)

    batch_items = [BatchItem(index, prompts[index], extra) for index in sorted(prompts)]
    try:
        with session:
            batch = Batch(
                pool,
                batch_items,
                OutputCommitter(out, session.env.temp_dir),
                force=args.force,
                on_event=display.event,
                on_start=display.start,
                on_result=on_result,
            )
            interrupted = wait_interruptible(batch)
            not_run = [r.index for r in batch.ordered_results() if r.status == "not_run"]
    finally:
        display.close()
        pool.close()
        if args.shared_out:
            shutil.rmtree(out / STAGING, ignore_errors=True)
    done = [reports[i] for i in sorted(reports)]
    return finish(
        args, done, time.perf_counter() - started, len(items), [labels[i] for i in not_run], interrupted
    )


def wait_interruptible(batch: Batch) -> bool:
    """Wait for the batch; Ctrl-C cancels it (running items interrupted, queued ones not started).

    A second Ctrl-C gives up waiting for running items to wind down. Returns True when interrupted.
    """
    batch.start()
    try:
        while not batch.wait(0.1):
            pass
        return False
    except KeyboardInterrupt:
        print("interrupting: running items stop, queued items do not start", file=sys.stderr)
        batch.cancel()
    try:
        while not batch.wait(0.1):
            pass
    except KeyboardInterrupt:
        print("stopped waiting for running items", file=sys.stderr)
    return True


def item_report(
    item: Item, prompt: dict[str, Any], result: ItemResult, models_dir: Path, display: BatchDisplay
) -> dict[str, Any]:
    """The --json entry of one item, with the worker that ran it; tells the display how it ended."""
    outcome = result.outcome
    if result.status == "invalid" and outcome is not None:
        text = validation_text(prompt, outcome.error, outcome.node_errors, models_dir)
        display.result(result.index, False, text)
        error = {**(outcome.error or {}), "node_errors": outcome.node_errors}
        return with_worker(item_json(item, "invalid", prompt, None, error), result)
    if outcome is None:
        message = (result.error or {}).get("message", result.status)
        display.result(result.index, False, message)
        return with_worker(item_json(item, result.status, prompt, None, result.error), result)
    run = RunResult(
        status=outcome.status,  # type: ignore[arg-type]  # invalid outcomes were reported above
        prompt_id=outcome.prompt_id,
        outputs={},
        ui=result.ui,
        executed=outcome.executed,
        cached=outcome.cached,
        files=result.files,
        timings=outcome.timings,
        seconds=outcome.seconds,
        error=outcome.error,
        node_errors=outcome.node_errors,
    )
    if run.ok:
        files = ", ".join(str(p) for p in run.all_files()) or "no files"
        message = (
            f"{result.worker}: {len(run.executed)} ran, {len(run.cached)} cached, {run.seconds:.1f}s: {files}"
        )
    elif run.status == "interrupted":
        message = f"{result.worker}: interrupted (Ctrl-C)"
    else:
        message = f"{result.worker}: {run.error_message()}"
    display.result(result.index, run.ok, message)
    return with_worker(item_json(item, run.status, prompt, run, run.error), result)


def with_worker(doc: dict[str, Any], result: ItemResult) -> dict[str, Any]:
    """Add which worker ran the item, its model loads there, and workers that died running it."""
    doc["worker"] = result.worker
    doc["model_loads"] = result.outcome.model_loads if result.outcome else 0
    doc["worker_deaths"] = list(result.deaths)
    return doc


def finish(
    args: argparse.Namespace,
    reports: list[dict[str, Any]],
    seconds: float,
    total: int,
    not_run: list[str],
    interrupted: bool,
) -> int:
    """Print the result (JSON or file paths), the summary, and choose the exit code."""
    if args.json:
        doc = run_json(args.workflow, reports, seconds, None, None, total)
        doc["not_run"] = not_run
        doc["interrupted"] = interrupted
        print_json(doc)
    else:
        for report in reports:
            for path in report["files"]:
                print(path)
    failed = sum(1 for r in reports if r["status"] != "success")
    listed = f" ({', '.join(not_run[:10])}{', ...' if len(not_run) > 10 else ''})" if not_run else ""
    print(
        f"{total} items: {len(reports) - failed} succeeded, {failed} failed, {len(not_run)} not run{listed} "
        f"({seconds:.1f}s)",
        file=sys.stderr,
    )
    if interrupted:
        return EXIT_INTERRUPTED
    return EXIT_FAILED if failed else EXIT_OK


def refuse_demo(args: argparse.Namespace) -> None:
    """The demo checkpoint is made on this machine only; with --ray it is refused, not faked."""
    if args.demo == "on":
        raise DiffgraphError(
            "--demo does not combine with --ray: the workers need the checkpoint in their models folder",
            code="bad_option",
        )
