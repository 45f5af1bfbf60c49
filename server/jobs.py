"""One prompt's record in the queue and history: the `Job` row type and its strict JSON encoding."""

from __future__ import annotations

import json
import math
import sqlite3
import time
from dataclasses import dataclass
from typing import Any

FINISHED = ("success", "error", "interrupted")
ACTIVE = ("pending", "running")
CRASH_MESSAGE = (
    "The server stopped while this prompt was running (crash or kill). Outputs written before that are "
    "listed; queue the prompt again to finish it."
)
SECOND_CRASH_MESSAGE = (
    "The server stopped twice while this prompt was running (it was re-queued once after the first "
    "crash), so it was not started again; it may be what brings the server down."
)

# ComfyUI's priority numbers stay within what a JSON client can represent exactly.
MAX_PRIORITY = 2.0**53


class UnstorableValue(ValueError):
    """A value that could be written but not read back (NaN, Infinity, lone surrogates...)."""


class UnreadableRow(ValueError):
    """A stored row whose columns do not decode; the store quarantines it."""


def now_ms() -> int:
    """Wall-clock milliseconds, the unit ComfyUI and the jobs API use."""
    return int(time.time() * 1000)


def display_number(value: float) -> int | float:
    """A priority as ComfyUI shows it: integral floats become ints."""
    return int(value) if math.isfinite(value) and float(value).is_integer() else value


def check_priority(value: float) -> float:
    """A finite priority inside +-2**53; raises UnstorableValue otherwise."""
    if not math.isfinite(value) or abs(value) > MAX_PRIORITY:
        raise UnstorableValue(f"number {value!r} is not a finite number within +-2**53")
    return float(value)


def to_json(value: Any, what: str) -> str:
    """JSON text that decodes back to the same value: no NaN/Infinity, valid UTF-8 strings only."""
    try:
        text = json.dumps(value, allow_nan=False, ensure_ascii=False)
        text.encode("utf-8")
    except (ValueError, TypeError, RecursionError) as exc:
        raise UnstorableValue(f"{what} cannot be stored: {exc}") from exc
    return text


def _column(row: sqlite3.Row, name: str) -> Any:
    raw = row[name]
    if raw is None:
        return None
    try:
        return json.loads(raw, parse_constant=_refuse_constant)
    except (ValueError, TypeError, RecursionError) as exc:
        raise UnreadableRow(f"column {name} does not decode: {exc}") from exc


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


@dataclass
class Job:
    """One prompt, queued, running or finished."""

    id: str
    number: float
    seq: int
    state: str
    prompt: dict[str, Any]
    extra_data: dict[str, Any]
    outputs_to_execute: list[str]
    client_id: str | None
    create_time: int
    start_time: int | None
    end_time: int | None
    current_node: str | None
    ui_outputs: dict[str, Any]
    messages: list[Any]
    error: dict[str, Any] | None
    crashes: int = 0

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Job:
        """Decode a `jobs` row; raises UnreadableRow when any column is malformed."""
        job = cls(
            id=row["id"],
            number=row["number"],
            seq=row["seq"],
            state=row["state"],
            prompt=_column(row, "prompt"),
            extra_data=_column(row, "extra_data"),
            outputs_to_execute=_column(row, "outputs_to_execute"),
            client_id=row["client_id"],
            create_time=row["create_time"],
            start_time=row["start_time"],
            end_time=row["end_time"],
            current_node=row["current_node"],
            ui_outputs=_column(row, "ui_outputs"),
            messages=_column(row, "messages"),
            error=_column(row, "error"),
            crashes=row["crashes"] or 0,
        )
        job.check()
        return job

    def check(self) -> None:
        """Raise UnreadableRow unless every field has the type the routes rely on."""
        shapes = {
            "id": (self.id, str),
            "number": (self.number, float | int),
            "state": (self.state, str),
            "prompt": (self.prompt, dict),
            "extra_data": (self.extra_data, dict),
            "outputs_to_execute": (self.outputs_to_execute, list),
            "ui_outputs": (self.ui_outputs, dict),
            "messages": (self.messages, list),
            "error": (self.error, dict | None),
        }
        for name, (value, kind) in shapes.items():
            if not isinstance(value, kind):
                raise UnreadableRow(f"column {name} holds {type(value).__name__}")
        if self.state not in FINISHED + ACTIVE:
            raise UnreadableRow(f"unknown state {self.state!r}")
        if not math.isfinite(self.number):
            raise UnreadableRow(f"number {self.number!r} is not finite")

    def queue_item(self) -> list[Any]:
        """ComfyUI's queue tuple: [number, prompt_id, prompt, extra_data, outputs_to_execute]."""
        return [display_number(self.number), self.id, self.prompt, self.extra_data, self.outputs_to_execute]

    def history_entry(self) -> dict[str, Any]:
        """ComfyUI's history entry: prompt item, outputs, status and per-output meta."""
        return {
            "prompt": self.queue_item(),
            "outputs": self.ui_outputs,
            "status": {
                "status_str": "success" if self.state == "success" else "error",
                "completed": self.state == "success",
                "messages": self.messages,
            },
            "meta": {
                node_id: {
                    "node_id": node_id,
                    "display_node": node_id,
                    "parent_node": None,
                    "real_node_id": node_id,
                }
                for node_id in self.ui_outputs
            },
        }


def crash_report(job: Job) -> tuple[list[Any], dict[str, Any]]:
    """(messages, error) recording that the server stopped while job was running."""
    message = SECOND_CRASH_MESSAGE if job.crashes else CRASH_MESSAGE
    node = job.prompt.get(job.current_node or "")
    error: dict[str, Any] = {
        "prompt_id": job.id,
        "node_id": job.current_node,
        "node_type": node.get("class_type") if isinstance(node, dict) else None,
        "executed": list(job.ui_outputs),
        "exception_message": message,
        "exception_type": "ServerRestart",
        "traceback": [],
        "current_inputs": {},
        "current_outputs": [],
        "timestamp": now_ms(),
    }
    return [*job.messages, ["execution_error", error]], error
