"""`DistributedSession`: Session's sibling on a Ray pool (load / set / run, and `map` as results complete)."""

from __future__ import annotations

import queue
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from diffgraph.api import RunFailed, RunResult, Session, WorkflowInvalid
from diffgraph.distributed.batch import Batch, BatchItem, ItemResult
from diffgraph.distributed.outputs import STAGING, OutputCommitter
from diffgraph.distributed.pool import Pool, PoolOptions
from diffgraph.workflow import Workflow
from engine.outcome import Status
from engine.registry import RegistryFactory
from engine.validation import ValidationResult

RUN_STATUSES = ("success", "error", "interrupted")


@dataclass
class DistributedResult(RunResult):
    """A RunResult from a pool worker: which variant it was, where it ran, what that worker loaded.

    Typed node outputs stay on the worker (`outputs` is empty); files and UI outputs come back.
    """

    index: int = -1
    batch_status: str = ""  # status, or why it never ran: `invalid`, `poisoned` (it killed two workers)
    worker: str | None = None
    model_loads: int = 0
    worker_deaths: list[str] | None = None


def run_result(result: ItemResult, prompt: dict[str, Any]) -> DistributedResult:
    """An item's result in RunResult's shape; items that never ran have status `error`, batch_status why."""
    outcome = result.outcome
    status: Status = result.status if result.status in RUN_STATUSES else "error"  # type: ignore[assignment]
    return DistributedResult(
        status=status,
        prompt_id=outcome.prompt_id if outcome else "",
        outputs={},
        ui=result.ui,
        executed=list(outcome.executed) if outcome else [],
        cached=list(outcome.cached) if outcome else [],
        files=result.files,
        timings=dict(outcome.timings) if outcome else {},
        seconds=outcome.seconds if outcome else 0.0,
        error=outcome.error if outcome else result.error,
        node_errors=dict(outcome.node_errors) if outcome else {},
        index=result.index,
        batch_status=result.status,
        worker=result.worker,
        model_loads=outcome.model_loads if outcome else 0,
        worker_deaths=list(result.deaths),
    )


class DistributedSession:
    """Runs workflows on a pool of Ray workers, each a warm Session; files land in output_dir here.

    >>> with DistributedSession(address="auto", output_dir="output") as cluster:
    ...     wf = cluster.load("workflows/txt2img_sd15.json")
    ...     variants = [wf.copy().set("KSampler", "seed", s) for s in range(100)]
    ...     for result in cluster.map(variants):   # as they complete, any order
    ...         print(result.index, result.worker, result.all_files())
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        workers: int | None = None,
        worker_cpus: float | None = None,
        models_dir: str | Path | None = None,
        output_dir: str | Path = "output",
        input_dir: str | Path = "input",
        registry_factory: RegistryFactory | None = None,
        shared_output: bool = False,
    ):
        self.local = Session(models_dir, output_dir, input_dir, registry_factory=registry_factory)
        self.output_dir = Path(output_dir).resolve()
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.pool = Pool.start(
            PoolOptions(
                address=address,
                workers=workers,
                worker_cpus=worker_cpus,
                models_dir=str(self.local.models_dir.resolve()),
                input_dir=str(Path(input_dir).resolve()),
                registry_factory=registry_factory,
                shared_staging=str(self.output_dir / STAGING) if shared_output else None,
            )
        )
        self.committer = OutputCommitter(self.output_dir, self.local.env.temp_dir)

    @property
    def workers(self) -> list[str]:
        """Names of the pool's live workers."""
        return [w.name for w in self.pool.alive]

    def load(self, source: str | Path | dict[str, Any]) -> Workflow:
        """Load a workflow here (API or UI JSON, or a file carrying one); edit it with `set`."""
        return self.local.load(source)

    def run(
        self, workflow: Workflow, *, force: bool = False, raise_on_error: bool = True
    ) -> DistributedResult:
        """Run one workflow on a worker; raises WorkflowInvalid / RunFailed as Session.run does."""
        result = next(self.map([workflow], force=force))
        if raise_on_error and result.batch_status == "invalid":
            validation = ValidationResult(False, result.error, result.node_errors, [], workflow.prompt)
            raise WorkflowInvalid(validation)
        if raise_on_error and not result.ok:
            raise RunFailed(result)
        return result

    def map(self, workflows: Iterable[Workflow], *, force: bool = False) -> Iterator[DistributedResult]:
        """Run every workflow across the pool; yields results as they complete (`.index` says which).

        Closing the iterator early cancels the rest: running variants are interrupted, queued ones
        never start.
        """
        chosen = list(workflows)
        prompts = [wf.prompt for wf in chosen]
        extras = [wf.extra_data() for wf in chosen]
        done: queue.Queue[ItemResult] = queue.Queue()
        items = [BatchItem(i, p, e) for i, (p, e) in enumerate(zip(prompts, extras, strict=True))]
        batch = Batch(self.pool, items, self.committer, force=force, on_result=done.put).start()
        received = 0
        try:
            while received < len(items):
                try:
                    result = done.get(timeout=0.2)
                except queue.Empty:
                    if batch.wait(0) and done.empty():
                        return  # every worker is gone: what never ran is not yielded
                    continue
                received += 1
                yield run_result(result, prompts[result.index])
        finally:
            if received < len(items):
                batch.cancel()
                batch.wait(30)

    def close(self) -> None:
        """End the workers (and the cluster connection when this session opened it)."""
        self.pool.close()
        self.local.close()
        shutil.rmtree(self.output_dir / STAGING, ignore_errors=True)  # what shared-output workers left

    def __enter__(self) -> DistributedSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
