"""Queue and history of prompts in SQLite (WAL): they survive restarts, and crashes lose no queued job."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FINISHED = ("success", "error", "interrupted")
ACTIVE = ("pending", "running")
SCHEMA_VERSION = 1
CRASH_MESSAGE = (
    "The server stopped while this prompt was running (crash or kill). Outputs written before that are "
    "listed; queue the prompt again to finish it."
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    number REAL NOT NULL,
    seq INTEGER NOT NULL,
    state TEXT NOT NULL,
    prompt TEXT NOT NULL,
    extra_data TEXT NOT NULL,
    outputs_to_execute TEXT NOT NULL,
    client_id TEXT,
    create_time INTEGER NOT NULL,
    start_time INTEGER,
    end_time INTEGER,
    history_seq INTEGER,
    current_node TEXT,
    ui_outputs TEXT NOT NULL DEFAULT '{}',
    messages TEXT NOT NULL DEFAULT '[]',
    error TEXT
);
CREATE INDEX IF NOT EXISTS jobs_queue ON jobs(state, number, seq);
CREATE INDEX IF NOT EXISTS jobs_history ON jobs(history_seq);
"""

_JOB_ORDER = (
    "CASE state WHEN 'running' THEN 0 WHEN 'pending' THEN 1 ELSE 2 END, "
    "CASE WHEN state = 'pending' THEN number END, CASE WHEN state = 'pending' THEN seq END, "
    "create_time DESC, seq DESC"
)


def now_ms() -> int:
    """Wall-clock milliseconds, the unit ComfyUI and the jobs API use."""
    return int(time.time() * 1000)


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


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

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Job:
        """Decode a `jobs` row."""
        return cls(
            id=row["id"],
            number=row["number"],
            seq=row["seq"],
            state=row["state"],
            prompt=json.loads(row["prompt"]),
            extra_data=json.loads(row["extra_data"]),
            outputs_to_execute=json.loads(row["outputs_to_execute"]),
            client_id=row["client_id"],
            create_time=row["create_time"],
            start_time=row["start_time"],
            end_time=row["end_time"],
            current_node=row["current_node"],
            ui_outputs=json.loads(row["ui_outputs"]),
            messages=json.loads(row["messages"]),
            error=json.loads(row["error"]) if row["error"] else None,
        )

    def queue_item(self) -> list[Any]:
        """ComfyUI's queue tuple: [number, prompt_id, prompt, extra_data, outputs_to_execute]."""
        return [_number(self.number), self.id, self.prompt, self.extra_data, self.outputs_to_execute]

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


class JobStore:
    """Thread-safe SQLite store; the worker waits on it for the next pending job."""

    def __init__(self, path: Path, history_limit: int = 10_000):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.history_limit = history_limit
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._conn.row_factory = sqlite3.Row
        self._lock = threading.RLock()
        self._wakeup = threading.Condition(self._lock)
        # Called with the queue size after every queue change, under the store's lock, so a status
        # broadcast for "queued" always leaves before the worker can announce that job starting.
        self.on_change: Callable[[int], None] | None = None
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode survives a killed process; only a power cut may lose the last commits.
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute("PRAGMA busy_timeout=5000")
            self._conn.executescript(_SCHEMA)
            self._conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            row = self._conn.execute(
                "SELECT MAX(ABS(number)), MAX(seq), MAX(history_seq) FROM jobs"
            ).fetchone()
        # Counters continue after a restart so resumed jobs keep their place ahead of new ones.
        self._counter = int(row[0] or 0) + 1
        self._seq = int(row[1] or 0) + 1
        self._history_seq = int(row[2] or 0) + 1
        self.recovered = self._recover()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _query(self, sql: str, args: Iterable[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._conn.execute(sql, tuple(args)).fetchall()

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._conn.close()

    def _recover(self) -> list[str]:
        """Jobs left `running` by a crash become failed with the reason; their partial outputs stay."""
        with self._tx() as conn:
            rows = conn.execute("SELECT * FROM jobs WHERE state = 'running'").fetchall()
            for row in rows:
                job = Job.from_row(row)
                error = {
                    "prompt_id": job.id,
                    "node_id": job.current_node,
                    "node_type": job.prompt.get(job.current_node or "", {}).get("class_type"),
                    "executed": list(job.ui_outputs),
                    "exception_message": CRASH_MESSAGE,
                    "exception_type": "ServerRestart",
                    "traceback": [],
                    "current_inputs": {},
                    "current_outputs": [],
                    "timestamp": now_ms(),
                }
                self._close_job(
                    conn, job.id, "error", job.ui_outputs, [*job.messages, ["execution_error", error]], error
                )
        return [row["id"] for row in rows]

    def exists(self, job_id: str) -> bool:
        """True when a job with this id is queued, running or in history."""
        return bool(self._query("SELECT 1 FROM jobs WHERE id = ?", [job_id]))

    def enqueue(
        self,
        job_id: str,
        prompt: dict[str, Any],
        extra_data: dict[str, Any],
        outputs: list[str],
        client_id: str | None,
        *,
        number: float | None = None,
        front: bool = False,
    ) -> int | float:
        """Add a pending job; ComfyUI's priority: explicit number, else the counter (negated for front)."""
        with self._lock, self._tx() as conn:
            if number is None:
                number = float(-self._counter if front else self._counter)
                self._counter += 1
            conn.execute(
                "INSERT INTO jobs (id, number, seq, state, prompt, extra_data, outputs_to_execute, client_id,"
                " create_time) VALUES (?, ?, ?, 'pending', ?, ?, ?, ?, ?)",
                (
                    job_id,
                    float(number),
                    self._seq,
                    json.dumps(prompt),
                    json.dumps(extra_data),
                    json.dumps(outputs),
                    client_id,
                    now_ms(),
                ),
            )
            self._seq += 1
            self._wakeup.notify_all()
            self._changed(conn)
        return _number(number)

    def wait_next(self, timeout: float) -> Job | None:
        """Claim the highest-priority pending job (marking it running), waiting up to timeout for one."""
        with self._wakeup:
            job = self._claim()
            if job is None:
                self._wakeup.wait(timeout)
                job = self._claim()
            return job

    def _changed(self, conn: sqlite3.Connection) -> None:
        if self.on_change is not None:
            count = conn.execute(
                "SELECT COUNT(*) FROM jobs WHERE state IN ('pending', 'running')"
            ).fetchone()[0]
            self.on_change(count)

    def wake(self) -> None:
        """Wake a waiting worker (used when stopping)."""
        with self._wakeup:
            self._wakeup.notify_all()

    def _claim(self) -> Job | None:
        with self._tx() as conn:
            row = conn.execute(
                "SELECT * FROM jobs WHERE state = 'pending' ORDER BY number, seq LIMIT 1"
            ).fetchone()
            if row is None:
                return None
            conn.execute(
                "UPDATE jobs SET state = 'running', start_time = ? WHERE id = ?", (now_ms(), row["id"])
            )
            self._changed(conn)
        return self.get(row["id"])

    def set_current_node(self, job_id: str, node_id: str | None) -> None:
        """Remember the node that is running, for the crash report."""
        with self._tx() as conn:
            conn.execute("UPDATE jobs SET current_node = ? WHERE id = ?", (node_id, job_id))

    def add_output(self, job_id: str, node_id: str, ui: dict[str, Any] | None) -> None:
        """Record one node's UI output as soon as it exists, so a crash later keeps it listed."""
        with self._tx() as conn:
            row = conn.execute("SELECT ui_outputs FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                return
            outputs = json.loads(row["ui_outputs"])
            outputs[node_id] = ui
            conn.execute("UPDATE jobs SET ui_outputs = ? WHERE id = ?", (json.dumps(outputs), job_id))

    def finish(
        self,
        job_id: str,
        state: str,
        ui_outputs: dict[str, Any],
        messages: list[Any],
        error: dict[str, Any] | None,
    ) -> None:
        """Move a running job into history."""
        assert state in FINISHED, state
        with self._tx() as conn:
            self._close_job(conn, job_id, state, ui_outputs, messages, error)
            self._changed(conn)

    def _close_job(
        self,
        conn: sqlite3.Connection,
        job_id: str,
        state: str,
        ui_outputs: dict[str, Any],
        messages: list[Any],
        error: dict[str, Any] | None,
    ) -> None:
        conn.execute(
            "UPDATE jobs SET state = ?, end_time = ?, history_seq = ?, ui_outputs = ?, messages = ?, error = ? "
            "WHERE id = ?",
            (
                state,
                now_ms(),
                self._history_seq,
                json.dumps(ui_outputs),
                json.dumps(messages),
                json.dumps(error) if error else None,
                job_id,
            ),
        )
        self._history_seq += 1
        excess = conn.execute("SELECT COUNT(*) FROM jobs WHERE history_seq IS NOT NULL").fetchone()[0]
        excess -= self.history_limit
        if excess > 0:
            conn.execute(
                "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs WHERE history_seq IS NOT NULL "
                "ORDER BY history_seq LIMIT ?)",
                (excess,),
            )

    def requeue(self, job_id: str) -> None:
        """Put a running job back at its old place (the server is shutting down cleanly)."""
        with self._tx() as conn:
            conn.execute(
                "UPDATE jobs SET state = 'pending', start_time = NULL, current_node = NULL, ui_outputs = '{}' "
                "WHERE id = ? AND state = 'running'",
                (job_id,),
            )
            self._changed(conn)

    def get(self, job_id: str) -> Job | None:
        """A job by id, or None."""
        rows = self._query("SELECT * FROM jobs WHERE id = ?", [job_id])
        return Job.from_row(rows[0]) if rows else None

    def queue(self) -> tuple[list[Job], list[Job]]:
        """(running, pending in execution order)."""
        rows = self._query("SELECT * FROM jobs WHERE state IN ('pending', 'running') ORDER BY number, seq")
        jobs = [Job.from_row(r) for r in rows]
        return [j for j in jobs if j.state == "running"], [j for j in jobs if j.state == "pending"]

    def queue_remaining(self) -> int:
        """Pending plus running jobs."""
        return self._query("SELECT COUNT(*) FROM jobs WHERE state IN ('pending', 'running')")[0][0]

    def delete_pending(self, ids: Iterable[str] | None = None) -> list[str]:
        """Drop pending jobs (all when ids is None); returns the ids removed."""
        with self._tx() as conn:
            if ids is None:
                rows = conn.execute("SELECT id FROM jobs WHERE state = 'pending'").fetchall()
            else:
                wanted = [str(i) for i in ids]
                marks = ",".join("?" * len(wanted))
                rows = conn.execute(
                    f"SELECT id FROM jobs WHERE state = 'pending' AND id IN ({marks})", wanted
                ).fetchall()
            removed = [r["id"] for r in rows]
            conn.executemany("DELETE FROM jobs WHERE id = ?", [(i,) for i in removed])
            self._changed(conn)
        return removed

    def delete_history(self, ids: Iterable[str] | None = None) -> None:
        """Drop finished jobs (all when ids is None)."""
        with self._tx() as conn:
            if ids is None:
                conn.execute("DELETE FROM jobs WHERE history_seq IS NOT NULL")
            else:
                conn.executemany(
                    "DELETE FROM jobs WHERE id = ? AND history_seq IS NOT NULL", [(str(i),) for i in ids]
                )

    def history(self, max_items: int | None = None, offset: int = -1) -> list[Job]:
        """ComfyUI's history paging: oldest first; max_items alone gives the newest N."""
        total = self._query("SELECT COUNT(*) FROM jobs WHERE history_seq IS NOT NULL")[0][0]
        if offset < 0:
            offset = max(total - max_items, 0) if max_items is not None else 0
        limit = -1 if max_items is None else max(max_items, 0)
        rows = self._query(
            "SELECT * FROM jobs WHERE history_seq IS NOT NULL ORDER BY history_seq LIMIT ? OFFSET ?",
            [limit, offset],
        )
        return [Job.from_row(r) for r in rows]

    def jobs(self, states: Iterable[str], limit: int | None, offset: int) -> tuple[list[Job], int]:
        """Jobs in the given states (running, then pending in order, then newest first) and their total."""
        wanted = list(states)
        if not wanted:
            return [], 0
        marks = ",".join("?" * len(wanted))
        total = self._query(f"SELECT COUNT(*) FROM jobs WHERE state IN ({marks})", wanted)[0][0]
        rows = self._query(
            f"SELECT * FROM jobs WHERE state IN ({marks}) ORDER BY {_JOB_ORDER} LIMIT ? OFFSET ?",
            [*wanted, -1 if limit is None else limit, offset],
        )
        return [Job.from_row(r) for r in rows], total
