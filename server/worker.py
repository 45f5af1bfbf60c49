"""The one worker thread that runs queued prompts and bridges engine events to the websocket hub."""

from __future__ import annotations

import io
import logging
import threading

from PIL import Image

from engine.context import CancelToken, Environment
from engine.events import Event, Executed, Executing, PreviewImage
from engine.executor import ExecutionResult, Executor
from engine.registry import Registry
from server.hub import Bridge, Hub
from server.store import Job, JobStore

log = logging.getLogger(__name__)
IDLE_POLL_S = 1.0


class ExecutorLost(Exception):
    """The process that ran the prompt went away (a remote worker died): the prompt is queued again."""


def encode_preview(image: Image.Image) -> bytes:
    """A preview picture as ComfyUI sends it, JPEG quality 95 (nodes already sized it: Environment)."""
    if image.mode != "RGB":
        image = image.convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


class Worker:
    """Pops jobs from the store in priority order and executes them, one at a time."""

    def __init__(
        self,
        registry: Registry,
        env: Environment,
        store: JobStore,
        hub: Hub,
        bridge: Bridge,
        *,
        executor: Executor | None = None,
    ):
        self.registry = registry
        self.env = env
        self.store = store
        self.hub = hub
        self.bridge = bridge
        self.executor = executor or Executor(registry, env)
        self.cancel = CancelToken()
        self._lock = threading.Lock()
        self._current: str | None = None
        self._stopping = threading.Event()
        self._free_models = False
        self._free_memory = False
        self._thread = threading.Thread(target=self._loop, name="diffgraph-worker", daemon=True)

    @property
    def current(self) -> str | None:
        """The id of the prompt being executed, or None."""
        return self._current

    def start(self) -> None:
        """Start the worker thread."""
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Interrupt the running prompt (it goes back to the queue) and end the thread."""
        self._stopping.set()
        self.cancel.cancel()
        self.store.wake()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("the worker did not stop within %.0f s; a node is ignoring cancellation", timeout)

    def interrupt(self, prompt_id: str | None = None) -> bool:
        """Cancel the running prompt (only if it is prompt_id, when given); True if one was cancelled."""
        with self._lock:
            if self._current is None or (prompt_id is not None and prompt_id != self._current):
                return False
            self.cancel.cancel()
            return True

    def request_free(self, unload_models: bool, free_memory: bool) -> None:
        """ComfyUI's /free: applied between prompts, never during one."""
        with self._lock:
            self._free_models |= unload_models
            self._free_memory |= free_memory
        if self._current is None:
            self.store.wake()

    def _loop(self) -> None:
        while not self._stopping.is_set():
            self._apply_free()
            job = self.store.wait_next(IDLE_POLL_S)
            if job is None:
                continue
            if self._stopping.is_set():
                self.store.requeue(job.id)
                return
            self._run(job)

    def _apply_free(self) -> None:
        with self._lock:
            unload, free = self._free_models, self._free_memory
            self._free_models = self._free_memory = False
        if free:
            self.executor.cache.clear()
        if (unload or free) and self.env.models is not None:
            self.env.models.unload_all()

    def _run(self, job: Job) -> None:
        with self._lock:
            self.cancel.reset()
            self._current = job.id
        self.bridge.call(self.hub.start, job.id, job.client_id)
        extra = dict(job.extra_data)
        previews = extra.get("preview_method") != "none"
        try:
            result = self.executor.execute(
                job.prompt,
                prompt_id=job.id,
                outputs=job.outputs_to_execute,
                extra_data=extra,
                sink=lambda event: self._on_event(job, event),
                cancel=self.cancel,
                previews=previews,
            )
        except ExecutorLost as exc:
            log.warning("prompt %s goes back to the queue: %s", job.id, exc)
            with self._lock:
                self._current = None
            self.store.requeue(job.id)
            self.bridge.call(self.hub.stop, job.id)
            return
        except Exception as exc:  # the executor reports node failures itself; this is an engine bug
            log.exception("executor failed on prompt %s", job.id)
            result = ExecutionResult.crashed(job.id, exc)
            self.bridge.call(self.hub.emit, "execution_error", result.error_data(), job.client_id)
        with self._lock:
            self._current = None
        if self._stopping.is_set() and result.status == "interrupted":
            self.store.requeue(job.id)  # shutdown, not the user, stopped it: run it again next start
        else:
            error = result.error_data()
            messages = [list(m) for m in result.messages]
            self.store.finish(job.id, result.status, result.ui_outputs, messages, error)
        self.bridge.call(self.hub.stop, job.id)
        if job.client_id:
            self.bridge.call(self.hub.emit, "executing", {"node": None, "prompt_id": job.id}, job.client_id)

    def _on_event(self, job: Job, event: Event) -> None:
        """Executor sink, on the worker thread: persist what must survive a crash, then hand to the hub."""
        if isinstance(event, PreviewImage):
            self._preview(job, event)
            return
        if isinstance(event, Executing) and event.node is not None:
            self.store.set_current_node(job.id, event.node)
        elif isinstance(event, Executed) and event.output is not None:
            self.store.add_output(job.id, event.node, event.output)
        self.bridge.call(self.hub.emit, event.type, event.data(), job.client_id)

    def _preview(self, job: Job, event: PreviewImage) -> None:
        if not self.hub.clients:
            return  # nobody watching: skip the encoding work
        image = encode_preview(event.image)
        meta = {
            "node_id": event.node_id,
            "prompt_id": event.prompt_id,
            "display_node_id": event.node_id,
            "parent_node_id": None,
            "real_node_id": event.node_id,
        }
        self.bridge.call(self.hub.preview, image, "image/jpeg", meta, job.client_id)
