"""How a run ended: the result every executor path returns, and the events that close a failed run."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from engine.cache import OutputCache
from engine.context import Environment
from engine.errors import NodeExecutionError
from engine.events import ExecutionError, ExecutionInterrupted
from engine.node import Node, NodeOutputs
from engine.registry import Registry
from engine.schema import NodeSpec

log = logging.getLogger(__name__)

Status = Literal["success", "error", "interrupted"]


class ExecutorHost(Protocol):
    """What a run needs from the executor that started it."""

    registry: Registry
    env: Environment
    cache: OutputCache

    def instance(self, node_cls: type[Node]) -> Node:
        """The shared instance of a node class."""

    def _fingerprint(self, spec: NodeSpec, inputs: dict[str, Any], links: dict[str, tuple[str, int]]) -> Any:
        """The node's IS_CHANGED value (NaN when its hook failed)."""


@dataclass
class ExecutionResult:
    """What a run produced: UI outputs per node, typed outputs, which nodes ran or came from cache."""

    status: Status
    ui_outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    executed: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)
    node_outputs: dict[str, NodeOutputs | None] = field(default_factory=dict)
    error: ExecutionError | ExecutionInterrupted | None = None
    messages: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    def error_data(self) -> dict[str, Any] | None:
        """The failure or interruption as its websocket payload (what history and clients show)."""
        return self.error.data() if self.error is not None else None

    @classmethod
    def crashed(cls, prompt_id: str, exc: BaseException) -> ExecutionResult:
        """The result of a run the executor could not finish (an engine bug), reported as an execution error."""
        error = ExecutionError(
            prompt_id=prompt_id,
            node_id=None,
            node_type=None,
            executed=[],
            exception_message=f"internal error: {exc}",
            exception_type=f"{type(exc).__module__}.{type(exc).__qualname__}",
            traceback=[],
            current_inputs={},
            current_outputs=[],
        )
        return cls(status="error", error=error, messages=[(error.type, error.data())])


def format_input(value: Any) -> Any:
    """An input value as shown in execution_error (primitives as is, others as a short repr)."""
    if isinstance(value, int | float | str | bool) or value is None:
        return value
    text = repr(value)
    return text if len(text) <= 200 else text[:197] + "..."


def interrupted(run: Any, node_id: str | None) -> ExecutionResult:
    """End a run as interrupted: the execution_interrupted event, naming the node that was running."""
    node_type = run.prompt[node_id]["class_type"] if node_id else None
    event = ExecutionInterrupted(
        prompt_id=run.prompt_id, node_id=node_id, node_type=node_type, executed=list(run.result.executed)
    )
    run.result.status = "interrupted"
    run.result.error = event
    run.emit(event, history=True)
    return run.result


def failed(run: Any, exc: NodeExecutionError) -> ExecutionResult:
    """End a run as failed: the execution_error event, naming the node and its inputs."""
    cause = exc.cause
    log.error("node %s (%s) failed", exc.node_id, exc.class_type, exc_info=cause)
    if exc.node_id in run.states:
        run.set_state(exc.node_id, "error")
    event = ExecutionError(
        prompt_id=run.prompt_id,
        node_id=exc.node_id,
        node_type=exc.class_type,
        executed=list(run.result.executed),
        exception_message=exc.message,
        exception_type=f"{type(cause).__module__}.{type(cause).__qualname__}",
        traceback=[],
        current_inputs=exc.extra.get("current_inputs", {}),
        current_outputs=list(run.result.executed),
    )
    run.result.status = "error"
    run.result.error = event
    run.emit(event, history=True)
    return run.result
