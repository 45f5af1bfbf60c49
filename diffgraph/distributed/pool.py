"""A pool of Ray actors, each holding a Session; the driver-side handle streams a task's events back."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from diffgraph.distributed.actor import Outcome, Record, SessionWorker, Task
from engine import CancelToken, DiffgraphError
from engine.registry import RegistryFactory

log = logging.getLogger(__name__)
POLL_S = 0.5  # longest a poll waits on the worker when nothing happens
CANCEL_CHECK_S = 0.1  # how often the driver looks at the cancel token while waiting for events
MAX_RESTARTS = 4  # a worker whose process died comes back this many times (cold caches)
READY_TIMEOUT_S = 300.0  # a worker's first start imports torch and the node library
ACTOR_THREADS = 4
RESTART_POLL_S = 0.2  # run, poll, cancel and free may be in flight together


class RayMissing(DiffgraphError):
    """Distributed runs need the ray package."""

    code = "ray_missing"


class WorkerLost(DiffgraphError):
    """The worker process died (killed, out of memory, node lost) while it ran a task."""

    code = "worker_lost"


def import_ray() -> Any:
    """The ray module, or a message saying how to install it."""
    try:
        import ray
    except ImportError:
        raise RayMissing("distributed runs need Ray: pip install 'diffgraph[ray]'") from None
    return ray


def connect(address: str | None, num_cpus: int | None = None) -> bool:
    """Join the cluster at address (`auto`: the one this machine belongs to), else start a local one.

    Returns True when this call connected (the caller disconnects at the end); a process that is
    already connected (tests, notebooks) keeps its connection.
    """
    ray = import_ray()
    if ray.is_initialized():
        return False
    if address in (None, "", "local"):
        ray.init(num_cpus=num_cpus, include_dashboard=False)
    else:
        ray.init(address=address)
    return True


def pool_shape(workers: int | None, worker_cpus: float | None) -> tuple[int, float, float]:
    """(workers, CPUs each, GPUs each): one per GPU, or one per `worker_cpus` CPUs without GPUs."""
    resources = import_ray().cluster_resources()
    gpus = int(resources.get("GPU", 0))
    cpus = float(resources.get("CPU", 1))
    if gpus:
        count = workers or gpus
        return count, worker_cpus or 1.0, min(1.0, gpus / count)
    each = worker_cpus or 4.0
    count = workers or max(1, int(cpus // each))
    return count, min(each, cpus), 0.0


@dataclass
class PoolOptions:
    """How to build a pool: cluster address, size, folders on the workers, node registry."""

    address: str | None = None
    workers: int | None = None
    worker_cpus: float | None = None
    models_dir: str | None = None
    input_dir: str = "input"
    registry_factory: RegistryFactory | None = None
    shared_staging: str | None = None  # a folder the driver and every worker see (else bytes travel)
    preview_size: int | None = None  # largest side of live previews (the server's --preview-size)


class RemoteWorker:
    """The driver's handle on one actor: runs a task, streaming its events, and notices deaths."""

    def __init__(self, name: str, actor: Any):
        self.name = name
        self.actor = actor
        self.alive = True

    def execute(self, task: Task, on_record: Callable[[Record], None], cancel: CancelToken) -> Outcome:
        """Run task there; raises WorkerLost if the process dies. Cancelling interrupts it there."""
        ray = import_ray()
        try:
            run_ref = self.actor.run.remote(task)
            sent, done = False, False
            while not done:
                poll_ref = self.actor.poll.remote(task.task_id, POLL_S)
                while True:
                    if cancel.cancelled and not sent:
                        self.actor.cancel.remote(task.task_id)
                        sent = True
                    if ray.wait([poll_ref], timeout=CANCEL_CHECK_S)[0]:
                        break
                records, done = ray.get(poll_ref)
                for record in records:
                    on_record(record)
            return ray.get(run_ref)
        except ray.exceptions.RayActorError as exc:
            raise WorkerLost(f"worker {self.name} died while running a task: {exc}") from exc

    def recover(self, timeout: float = READY_TIMEOUT_S) -> bool:
        """After a death: wait for Ray to restart the actor; False (and not alive) when it cannot."""
        ray = import_ray()
        deadline = time.monotonic() + timeout
        while True:
            try:
                ray.get(self.actor.info.remote(), timeout=max(0.1, deadline - time.monotonic()))
                return True
            except ray.exceptions.ActorUnavailableError:
                if time.monotonic() > deadline:
                    break
                time.sleep(RESTART_POLL_S)  # restarting: its process is coming back
            except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError) as exc:
                log.warning("worker %s is gone: %s", self.name, exc)
                break
        self.alive = False
        return False

    def free(self, unload_models: bool, free_memory: bool) -> None:
        """ComfyUI's /free on this worker (waits for it)."""
        import_ray().get(self.actor.free.remote(unload_models, free_memory))

    def info(self) -> dict[str, Any]:
        """Name, host, process id and model loads of the worker."""
        return import_ray().get(self.actor.info.remote())


class Pool:
    """Actors of one pool; `close` ends them (and the connection, when the pool opened it)."""

    def __init__(self, workers: list[RemoteWorker], connected: bool):
        self.workers = workers
        self.connected = connected

    @classmethod
    def start(cls, options: PoolOptions) -> Pool:
        """Connect (or start a local cluster), create the actors and wait until each is ready."""
        ray = import_ray()
        connected = connect(options.address)
        try:
            count, cpus, gpus = pool_shape(options.workers, options.worker_cpus)
            actor_cls = ray.remote(SessionWorker).options(
                num_cpus=cpus, num_gpus=gpus, max_concurrency=ACTOR_THREADS, max_restarts=MAX_RESTARTS
            )
            workers = []
            for number in range(1, count + 1):
                name = f"w{number}"
                actor = actor_cls.remote(
                    name,
                    options.registry_factory,
                    options.models_dir,
                    options.input_dir,
                    options.shared_staging,
                    options.preview_size,
                )
                workers.append(RemoteWorker(name, actor))
            try:
                ray.get([w.actor.info.remote() for w in workers], timeout=READY_TIMEOUT_S)
            except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError) as exc:
                for worker in workers:
                    ray.kill(worker.actor, no_restart=True)
                raise WorkerLost(
                    f"a worker could not start (its log on the cluster says why): {exc}"
                ) from exc
        except BaseException:
            if connected:
                ray.shutdown()
            raise
        return cls(workers, connected)

    @property
    def alive(self) -> list[RemoteWorker]:
        """Workers that have not died for good."""
        return [w for w in self.workers if w.alive]

    def close(self) -> None:
        """End every actor; disconnect if this pool connected."""
        ray = import_ray()
        for worker in self.workers:
            ray.kill(worker.actor, no_restart=True)
        if self.connected:
            ray.shutdown()

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
