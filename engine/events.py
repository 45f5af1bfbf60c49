"""Typed execution events; each maps one-to-one to a ComfyUI websocket message type."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar


def now_ms() -> int:
    """Wall-clock timestamp in milliseconds, as ComfyUI stamps its messages."""
    return int(time.time() * 1000)


@dataclass
class Event:
    """Base of all events; `type` is the websocket message type, `data()` its payload."""

    type: ClassVar[str] = "event"

    def data(self) -> dict[str, Any]:
        """The JSON payload sent as `{"type": ..., "data": ...}`."""
        return asdict(self)


@dataclass
class ExecutionStart(Event):
    """A prompt began executing."""

    type: ClassVar[str] = "execution_start"
    prompt_id: str
    timestamp: int = field(default_factory=now_ms)


@dataclass
class ExecutionCached(Event):
    """Nodes of the prompt whose outputs came from the cache; they get no `executing`."""

    type: ClassVar[str] = "execution_cached"
    nodes: list[str]
    prompt_id: str
    timestamp: int = field(default_factory=now_ms)


@dataclass
class Executing(Event):
    """A node is about to run (node None marks the end of a prompt; the server sends that one)."""

    type: ClassVar[str] = "executing"
    node: str | None
    display_node: str | None
    prompt_id: str


@dataclass
class Progress(Event):
    """Step progress inside a node (sampler: value = step + 1, max = number of steps)."""

    type: ClassVar[str] = "progress"
    value: int
    max: int
    prompt_id: str
    node: str


@dataclass
class ProgressState(Event):
    """Snapshot of every non-pending node's state: {id: {value, max, state, node_id, ...}}."""

    type: ClassVar[str] = "progress_state"
    prompt_id: str
    nodes: dict[str, dict[str, Any]]


@dataclass
class Executed(Event):
    """A node produced UI output (images, text...), or a cached output node replays its UI."""

    type: ClassVar[str] = "executed"
    node: str
    display_node: str
    output: dict[str, Any] | None
    prompt_id: str


@dataclass
class ExecutionSuccess(Event):
    """The prompt finished without error."""

    type: ClassVar[str] = "execution_success"
    prompt_id: str
    timestamp: int = field(default_factory=now_ms)


@dataclass
class ExecutionError(Event):
    """A node failed; the prompt stops. The traceback goes to the log only (empty list here)."""

    type: ClassVar[str] = "execution_error"
    prompt_id: str
    node_id: str | None  # None when the engine itself failed, outside any node
    node_type: str | None
    executed: list[str]
    exception_message: str
    exception_type: str
    traceback: list[str]
    current_inputs: dict[str, Any]
    current_outputs: list[str]
    timestamp: int = field(default_factory=now_ms)


@dataclass
class ExecutionInterrupted(Event):
    """The user interrupted the prompt."""

    type: ClassVar[str] = "execution_interrupted"
    prompt_id: str
    node_id: str | None
    node_type: str | None
    executed: list[str]
    timestamp: int = field(default_factory=now_ms)


@dataclass
class PreviewImage(Event):
    """A live preview picture (a PIL image) from a node; the server encodes it as a binary frame."""

    type: ClassVar[str] = "preview_image"
    prompt_id: str
    node_id: str
    image: Any

    def data(self) -> dict[str, Any]:
        """Previews are binary frames; the JSON payload carries only the ids."""
        return {"prompt_id": self.prompt_id, "node_id": self.node_id}


@dataclass
class CustomMessage(Event):
    """A message a node sends to clients under its own type name (ComfyUI's PromptServer.send_sync)."""

    message_type: str
    payload: dict[str, Any]

    @property  # type: ignore[misc]  # an instance's own type name, where other events use the class's
    def type(self) -> str:  # type: ignore[override]
        """The websocket message type the node chose."""
        return self.message_type

    def data(self) -> dict[str, Any]:
        """The node's payload as given."""
        return self.payload


EventSink = Callable[[Event], None]


def discard(event: Event) -> None:
    """An event sink that drops everything (headless runs that need no events)."""
