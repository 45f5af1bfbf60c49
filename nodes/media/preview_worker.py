"""Live previews off the sampling thread: a worker turns the newest step's x0 into a picture, latest wins.

The sampler only copies the first batch item of x0 (a few KB) and hands it over; it never waits for a
picture to be made or sent. When the worker is still busy with an older step, the step waiting behind it
is replaced by the newer one, so previews arrive in step order, may skip steps, and a slow previewer or
a slow event consumer never slows sampling. `close()` delivers the newest pending step before the
sampler node finishes, so a node's last preview still precedes its result.

The worker also keeps its share of the machine bounded: after a picture that took t seconds it rests
t * (1 / duty - 1) before starting the next (duty 5% by default), so an expensive previewer (TAESD on a
CPU costs about a whole SD1.5 step there) shows fewer steps instead of competing with the sampler for the
same cores. Cheap previews (the latent2rgb projection, TAESD on a GPU) are never held back in practice.

On CUDA the copy is made on the sampler's stream and the worker reads it on a stream of its own after
waiting for an event: the picture (projection or TAESD decode, and the copy to the host) overlaps the
next step instead of queueing on the sampler's stream.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

log = logging.getLogger(__name__)

# Largest share of wall time the worker spends making pictures (see the module docstring).
DEFAULT_DUTY = 0.05


@dataclass
class _Step:
    """One handed-over step: its index, the copied x0 item, and (CUDA) the event that makes it readable."""

    index: int
    x0: torch.Tensor
    ready: Any = None


def snapshot(x0: torch.Tensor) -> _Step:
    """A private copy of x0's first batch item, safe to read from another thread once `ready` fired."""
    first = x0[:1].detach()
    if first.device.type == "cuda":
        copy = first.clone()
        ready = torch.cuda.Event()
        ready.record()
        return _Step(-1, copy, ready)
    return _Step(-1, first.clone(), None)


class PreviewWorker:
    """A background thread that makes and delivers preview pictures, newest step first, never blocking.

    `make_image(x0)` builds a picture from a [1, C, h, w] model-space x0; `deliver(picture)` sends it
    (RunContext.preview). Counters: `delivered`, `dropped` (steps replaced before the worker got to them).
    """

    def __init__(
        self,
        make_image: Callable[[torch.Tensor], Any],
        deliver: Callable[[Any], None],
        duty: float = DEFAULT_DUTY,
    ):
        if not 0 < duty <= 1:
            raise ValueError(f"duty must be in (0, 1], got {duty}")
        self._make_image = make_image
        self._deliver = deliver
        self._rest_factor = 1 / duty - 1
        self._rest_until = 0.0
        self._cond = threading.Condition()
        self._pending: _Step | None = None
        self._closed = False
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self.delivered = 0
        self.dropped = 0

    def submit(self, index: int, x0: torch.Tensor) -> None:
        """Hand over step `index`'s x0; returns at once (raises a failure of an earlier preview)."""
        step = snapshot(x0)
        step.index = index
        with self._cond:
            self._raise_error()
            if self._closed:
                raise RuntimeError("preview worker already closed")
            if self._pending is not None:
                self.dropped += 1
            self._pending = step
            self._cond.notify_all()
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="diffgraph-preview", daemon=True)
            self._thread.start()

    def close(self, raise_errors: bool = True) -> None:
        """Deliver the pending step, wait for the worker to end, and raise a preview failure if asked."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()
        if raise_errors:
            with self._cond:
                self._raise_error()
        elif self._error is not None:
            log.warning("a live preview failed while the run was failing too: %s", self._error)

    def _raise_error(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def _loop(self) -> None:
        stream = None
        while True:
            step = self._next()
            if step is None:
                return
            started = time.monotonic()
            try:
                if step.ready is not None:
                    stream = stream or torch.cuda.Stream(step.x0.device)
                    picture = self._on_side_stream(step, stream)
                else:
                    with torch.inference_mode():
                        picture = self._make_image(step.x0)
                self._deliver(picture)
                self.delivered += 1
                self._rest_until = time.monotonic() + (time.monotonic() - started) * self._rest_factor
            except BaseException as exc:  # handed to the sampler thread, which raises it (never dropped)
                with self._cond:
                    self._error = exc
                    self._pending = None
                return

    def _next(self) -> _Step | None:
        """The newest pending step once the worker rested enough (at once when closing); None at the end."""
        with self._cond:
            while not self._closed:
                wait = self._rest_until - time.monotonic()
                if self._pending is not None and wait <= 0:
                    break
                self._cond.wait(wait if self._pending is not None else None)
            step, self._pending = self._pending, None
            return step

    def _on_side_stream(self, step: _Step, stream: Any) -> Any:
        """Make a CUDA step's picture on the worker's own stream, after the sampler's copy is done."""
        with torch.cuda.stream(stream), torch.inference_mode():
            stream.wait_event(step.ready)
            step.x0.record_stream(stream)
            return self._make_image(step.x0)
