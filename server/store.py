"""Queue and history of prompts in SQLite (WAL): they survive restarts, and crashes lose no queued job.

Nothing is written that cannot be read back (`to_json` refuses NaN, Infinity and lone surrogates); a
row that still fails to decode is moved to the `quarantine` table with a log line instead of
breaking every listing.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from server.jobs import (
    ACTIVE,
    FINISHED,
    MAX_PRIORITY,
    Job,
    UnreadableRow,
    check_priority,
    crash_report,
    display_number,
    now_ms,
    to_json,
)
from server.store_file import BadDatabase, open_database

__all__ = ["ACTIVE", "FINISHED", "Job", "JobStore"]
log = logging.getLogger(__name__)
_JOB_ORDER = (
    "CASE state WHEN 'running' THEN 0 WHEN 'pending' THEN 1 ELSE 2 END, "
    "CASE WHEN state = 'pending' THEN number END, CASE WHEN state = 'pending' THEN seq END, "
    "create_time DESC, seq DESC"
)


class JobStore:
    """Thread-safe SQLite store; the worker waits on it for the next pending job.

    `requeue=True` puts a prompt that was running at a crash back at the front of the queue once
    (a second crash marks it failed); False marks it failed at once.
    """

    def __init__(
        self,
        path: Path,
        history_limit: int = 10_000,
        *,
        requeue: bool = True,
        on_bad: BadDatabase = "move",
    ):
        self.path = path
        self.history_limit = history_limit
        self._conn, self.moved_note = open_database(path, on_bad)
        self._lock = threading.RLock()
        # GET /queue's cache: (queue version, body), and each active job's spliced item by id.
        self._version = 0
        self._listing: tuple[int, str] | None = None
        self._items: dict[str, str] = {}
        self._wakeup = threading.Condition(self._lock)
        # Called with the queue size after every queue change, under the store's lock, so a status
        # broadcast for "queued" always leaves before the worker can announce that job starting.
        self.on_change: Callable[[int], None] | None = None
        with self._lock:
            self._quarantine_where(f"NOT (ABS(number) <= {MAX_PRIORITY})", "number is not finite")
            for row in self._conn.execute("SELECT * FROM jobs WHERE state IN ('pending', 'running')"):
                self._decode(row)
            row = self._conn.execute(
                "SELECT MAX(ABS(number)), MAX(seq), MAX(history_seq) FROM jobs"
            ).fetchone()
        # Counters continue after a restart so resumed jobs keep their place ahead of new ones.
        self._counter = int(row[0] or 0) + 1
        self._seq = int(row[1] or 0) + 1
        self._history_seq = int(row[2] or 0) + 1
        self.requeued: list[str] = []
        self.recovered = self._recover(requeue)

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            nested = self._conn.in_transaction
            if not nested:
                self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                if not nested:
                    self._conn.execute("ROLLBACK")
                raise
            if not nested:
                self._conn.execute("COMMIT")

    def _query(self, sql: str, args: Iterable[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._conn.execute(sql, tuple(args)).fetchall()

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._conn.close()

    def _quarantine(self, row: sqlite3.Row, reason: str) -> None:
        """Move an unreadable row out of `jobs` (kept in `quarantine`), with a log line."""
        raw = dict(zip(row.keys(), tuple(row), strict=True))
        self._version += 1
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO quarantine (id, reason, row_json, time) VALUES (?, ?, ?, ?)",
                (str(raw.get("id")), reason, json.dumps(raw, default=repr, allow_nan=True), now_ms()),
            )
            conn.execute(
                "DELETE FROM jobs WHERE rowid = (SELECT rowid FROM jobs WHERE id = ?)", (raw.get("id"),)
            )
        log.warning("quarantined unreadable job %r in %s: %s", raw.get("id"), self.path, reason)

    def _quarantine_where(self, condition: str, reason: str) -> None:
        for row in self._conn.execute(f"SELECT * FROM jobs WHERE {condition}").fetchall():
            self._quarantine(row, reason)

    def _decode(self, row: sqlite3.Row) -> Job | None:
        try:
            return Job.from_row(row)
        except UnreadableRow as exc:
            self._quarantine(row, str(exc))
            return None

    def _jobs(self, rows: Iterable[sqlite3.Row]) -> list[Job]:
        return [job for job in (self._decode(r) for r in rows) if job is not None]

    def quarantined(self) -> list[dict[str, Any]]:
        """The quarantined rows: {id, reason, time}."""
        rows = self._query("SELECT id, reason, time FROM quarantine ORDER BY time")
        return [dict(r) for r in rows]

    def _recover(self, requeue: bool) -> list[str]:
        """Jobs left `running` by a crash: re-queued at the front once, else failed with the reason."""
        failed = []
        with self._tx() as conn:
            for job in self._jobs(conn.execute("SELECT * FROM jobs WHERE state = 'running'").fetchall()):
                if requeue and job.crashes == 0:
                    conn.execute(
                        "UPDATE jobs SET state = 'pending', number = ?, crashes = 1, start_time = NULL, "
                        "current_node = NULL, ui_outputs = '{}' WHERE id = ?",
                        (float(-self._counter), job.id),
                    )
                    self._counter += 1
                    self.requeued.append(job.id)
                    continue
                self._close_job(conn, job.id, "error", job.ui_outputs, *crash_report(job))
                failed.append(job.id)
        return failed

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
        """Add a pending job; ComfyUI's priority: explicit number, else the counter (negated for front).

        Raises UnstorableValue (a ValueError) when a part could not be read back once stored.
        """
        row = (to_json(prompt, "prompt"), to_json(extra_data, "extra_data"), to_json(outputs, "outputs"))
        if number is not None:
            number = check_priority(number)
        with self._lock, self._tx() as conn:
            if number is None:
                number = float(-self._counter if front else self._counter)
                self._counter += 1
            conn.execute(
                "INSERT INTO jobs (id, number, seq, state, prompt, extra_data, outputs_to_execute, client_id,"
                " create_time) VALUES (?, ?, ?, 'pending', ?, ?, ?, ?, ?)",
                (job_id, float(number), self._seq, *row, client_id, now_ms()),
            )
            self._seq += 1
            self._wakeup.notify_all()
            self._changed(conn)
        return display_number(number)

    def wait_next(self, timeout: float) -> Job | None:
        """Claim the highest-priority pending job (marking it running), waiting up to timeout for one."""
        with self._wakeup:
            job = self._claim()
            if job is None:
                self._wakeup.wait(timeout)
                job = self._claim()
            return job

    def _changed(self, conn: sqlite3.Connection) -> None:
        self._version += 1  # the cached GET /queue body is stale
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
            while True:
                row = conn.execute(
                    "SELECT * FROM jobs WHERE state = 'pending' ORDER BY number, seq LIMIT 1"
                ).fetchone()
                if row is None:
                    return None
                job = self._decode(row)
                if job is not None:
                    break
            start = now_ms()
            conn.execute("UPDATE jobs SET state = 'running', start_time = ? WHERE id = ?", (start, job.id))
            self._changed(conn)
        job.state, job.start_time = "running", start
        return job

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
            text = to_json(outputs, f"UI output of node {node_id}")
            conn.execute("UPDATE jobs SET ui_outputs = ? WHERE id = ?", (text, job_id))

    def finish(
        self,
        job_id: str,
        state: str,
        ui_outputs: dict[str, Any],
        messages: list[Any],
        error: dict[str, Any] | None,
    ) -> None:
        """Move a running job into history (raises UnstorableValue when a part cannot be stored)."""
        assert state in FINISHED, state
        with self._tx() as conn:
            self._close_job(conn, job_id, state, ui_outputs, messages, error)
            self._changed(conn)

    def fail(self, job_id: str, message: str) -> None:
        """Record a job as failed with only a message (when its own results could not be stored)."""
        error: dict[str, Any] = {"prompt_id": job_id, "node_id": None, "node_type": None, "executed": []}
        error.update(exception_message=message, exception_type="StoreError", traceback=[], current_inputs={})
        self.finish(job_id, "error", {}, [["execution_error", {**error, "timestamp": now_ms()}]], error)

    def _close_job(
        self,
        conn: sqlite3.Connection,
        job_id: str,
        state: str,
        ui_outputs: dict[str, Any],
        messages: list[Any],
        error: dict[str, Any] | None,
    ) -> None:
        row = (
            to_json(ui_outputs, "UI outputs"),
            to_json(messages, "messages"),
            to_json(error, "error") if error else None,
        )
        conn.execute(
            "UPDATE jobs SET state = ?, end_time = ?, history_seq = ?, ui_outputs = ?, messages = ?, error = ? "
            "WHERE id = ?",
            (state, now_ms(), self._history_seq, *row, job_id),
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
        with self._lock:
            rows = self._query("SELECT * FROM jobs WHERE id = ?", [job_id])
            return self._decode(rows[0]) if rows else None

    def queue(self) -> tuple[list[Job], list[Job]]:
        """(running, pending in execution order)."""
        with self._lock:
            rows = self._query(
                "SELECT * FROM jobs WHERE state IN ('pending', 'running') ORDER BY number, seq"
            )
            jobs = self._jobs(rows)
        return [j for j in jobs if j.state == "running"], [j for j in jobs if j.state == "pending"]

    def queue_json(self) -> str:
        """GET /queue's body, spliced from the stored JSON texts without decoding them.

        Those texts were written by `to_json` and the active rows were decoded at start-up and are
        again when claimed, so they are valid JSON. Each job's item is spliced once and kept while
        the job is queued or running, and the whole body is kept until the queue changes: during a
        burst, clients polling a queue of hundreds of prompts cost microseconds, not milliseconds
        of GIL time each.
        """
        with self._lock:
            version = self._version
            if self._listing is not None and self._listing[0] == version:
                return self._listing[1]
            rows = self._query(
                "SELECT state, id FROM jobs WHERE state IN ('pending', 'running') ORDER BY number, seq"
            )
            missing = [job_id for _, job_id in rows if job_id not in self._items]
            for first in range(0, len(missing), 500):
                chunk = missing[first : first + 500]
                for number, job_id, prompt, extra, outputs in self._query(
                    "SELECT number, id, prompt, extra_data, outputs_to_execute FROM jobs "
                    f"WHERE id IN ({','.join('?' * len(chunk))})",
                    chunk,
                ):
                    number_text = json.dumps(display_number(number))
                    self._items[job_id] = (
                        f"[{number_text}, {json.dumps(job_id)}, {prompt}, {extra}, {outputs}]"
                    )
            items = self._items = {job_id: self._items[job_id] for _, job_id in rows}
            running = ", ".join(items[job_id] for state, job_id in rows if state == "running")
            pending = ", ".join(items[job_id] for state, job_id in rows if state == "pending")
            text = f'{{"queue_running": [{running}], "queue_pending": [{pending}]}}'
            self._listing = (version, text)
            return text

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
        with self._lock:
            total = self._query("SELECT COUNT(*) FROM jobs WHERE history_seq IS NOT NULL")[0][0]
            if offset < 0:
                offset = max(total - max_items, 0) if max_items is not None else 0
            limit = -1 if max_items is None else max(max_items, 0)
            rows = self._query(
                "SELECT * FROM jobs WHERE history_seq IS NOT NULL ORDER BY history_seq LIMIT ? OFFSET ?",
                [limit, offset],
            )
            return self._jobs(rows)

    def jobs(self, states: Iterable[str], limit: int | None, offset: int) -> tuple[list[Job], int]:
        """Jobs in the given states (running, then pending in order, then newest first) and their total."""
        wanted = list(states)
        if not wanted:
            return [], 0
        marks = ",".join("?" * len(wanted))
        with self._lock:
            total = self._query(f"SELECT COUNT(*) FROM jobs WHERE state IN ({marks})", wanted)[0][0]
            rows = self._query(
                f"SELECT * FROM jobs WHERE state IN ({marks}) ORDER BY {_JOB_ORDER} LIMIT ? OFFSET ?",
                [*wanted, -1 if limit is None else limit, offset],
            )
            jobs = self._jobs(rows)
        return jobs, total - (len(rows) - len(jobs))
