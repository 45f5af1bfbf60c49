"""`diffgraph serve --ray`: the server's prompts run on a pool of Ray workers, one prompt per worker."""

from __future__ import annotations

import argparse
import dataclasses
import threading
import uuid
from pathlib import Path
from typing import Any

from diffgraph.distributed.actor import Record, Task
from diffgraph.distributed.outputs import OutputCommitter, rename_ui
from diffgraph.distributed.pool import Pool, PoolOptions, RemoteWorker, WorkerLost
from engine import CancelToken, Environment
from engine.events import Event, EventSink, Executed
from engine.executor import ExecutionResult
from engine.registry import RegistryFactory
from server.worker import ExecutorLost


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """--ray, --workers and --worker-cpus on `diffgraph serve`."""
    parser.add_argument(
        "--ray",
        nargs="?",
        const="local",
        metavar="ADDRESS",
        help="run queued prompts on a Ray cluster, one per worker at a time: no ADDRESS starts a local "
        "cluster, `auto` joins the one this machine belongs to, HOST:PORT joins that head node",
    )
    parser.add_argument(
        "--workers", type=int, help="with --ray: how many workers (default one per GPU, else one per 4 CPUs)"
    )
    parser.add_argument("--worker-cpus", type=float, help="with --ray: CPUs each worker reserves")


class _RemoteCache:
    """The slot's `cache`: clearing it clears the worker's output cache."""

    def __init__(self, worker: RemoteWorker):
        self.worker = worker

    def clear(self) -> None:
        """Forget the worker's cached node outputs."""
        self.worker.free(False, True)


class _RemoteModels:
    """The slot's model store as the server's worker sees it: unloading reaches the remote worker."""

    def __init__(self, worker: RemoteWorker):
        self.worker = worker

    def unload_all(self) -> None:
        """Unload every model on the worker."""
        self.worker.free(True, False)


class RemoteExecutor:
    """An executor slot backed by one pool worker; files come back into the server's folders.

    Files are committed as each `executed` event arrives (so the client can fetch them at once),
    under the names a local server would give them; a prompt whose worker dies loses those partial
    files and goes back to the queue.
    """

    def __init__(self, worker: RemoteWorker, committer: OutputCommitter):
        self.worker = worker
        self.committer = committer
        self.cache = _RemoteCache(worker)
        self.models = _RemoteModels(worker)
        # Worker-side names -> names here, so a cached output node replaying its UI points at the file.
        self.names: dict[tuple[str, str, str], str] = {}
        self._lost = False
        self._lock = threading.Lock()

    def ready(self) -> bool:
        """True when the worker can take a prompt; after a death, waits for Ray to restart it."""
        if self._lost and self.worker.alive and self.worker.recover():
            self._lost = False
        return self.worker.alive and not self._lost

    def execute(
        self,
        prompt: dict[str, Any],
        *,
        prompt_id: str,
        outputs: list[str],
        extra_data: dict[str, Any] | None = None,
        sink: EventSink,
        cancel: CancelToken,
        force: bool = False,
        previews: bool = True,
    ) -> ExecutionResult:
        """Run the prompt on the worker, streaming its events to sink; ExecutorLost if it dies."""
        task = Task(
            f"{prompt_id}-{uuid.uuid4().hex[:6]}",
            prompt,
            prompt_id,
            extra_data or {},
            outputs,
            force,
            previews,
        )
        committed: list[Path] = []

        def on_record(record: Record) -> None:
            sink(self._localize(record, committed))

        try:
            outcome = self.worker.execute(task, on_record, cancel)
        except WorkerLost as exc:
            self._lost = True
            self.committer.remove(committed)
            raise ExecutorLost(exc.message) from exc
        return ExecutionResult(
            status=outcome.status,  # type: ignore[arg-type]
            ui_outputs={node: rename_ui(ui, self.names) or {} for node, ui in outcome.ui.items()},
            executed=outcome.executed,
            cached=outcome.cached,
            error=outcome.error_event,
            messages=[tuple(m) for m in outcome.messages],  # type: ignore[misc]
            timings=outcome.timings,
        )

    def _localize(self, record: Record, committed: list[Path]) -> Event:
        event = record.event
        if not isinstance(event, Executed) or not event.output:
            return event
        placed = self.committer.commit(record.files)
        committed.extend(placed.values())
        with self._lock:
            self.names.update({address: path.name for address, path in placed.items()})
            output = rename_ui(event.output, self.names)
        return dataclasses.replace(event, output=output)


def slot_factory(args: argparse.Namespace, registry_factory: RegistryFactory | None) -> Any:
    """`make_slots` for server.main.run_serve: starts the pool for the server's folders."""
    pools: list[Pool] = []

    def make_slots(env: Environment) -> list[Any]:
        pool = Pool.start(
            PoolOptions(
                address=args.ray,
                workers=args.workers,
                worker_cpus=args.worker_cpus,
                models_dir=str(Path(env.model_paths.root).resolve()),
                input_dir=str(Path(env.input_dir).resolve()),
                registry_factory=registry_factory,
                preview_size=env.preview_size,
            )
        )
        pools.append(pool)
        committer = OutputCommitter(Path(env.output_dir), Path(env.temp_dir))
        return [RemoteExecutor(worker, committer) for worker in pool.workers]

    def close() -> None:
        for pool in pools:
            pool.close()

    make_slots.close = close  # type: ignore[attr-defined]
    return make_slots
