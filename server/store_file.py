"""Opening the queue database: schema and migrations, and what happens to a corrupt or newer file."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Literal

from engine.errors import DiffgraphError

# 1: jobs table. 2: `crashes` counter (re-queue once after a crash) and the quarantine table.
SCHEMA_VERSION = 2
BadDatabase = Literal["move", "refuse"]
BAD_DATABASE_CHOICES: tuple[BadDatabase, ...] = ("move", "refuse")

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
CREATE TABLE IF NOT EXISTS quarantine (
    id TEXT,
    reason TEXT NOT NULL,
    row_json TEXT NOT NULL,
    time INTEGER NOT NULL
);
"""


class DatabaseRefused(DiffgraphError):
    """The queue database is corrupt or from a newer diffgraph, and the user asked not to replace it."""

    code = "database_refused"


def _problem(path: Path) -> str | None:
    """Why an existing database file cannot be used, or None when it can (or does not exist yet)."""
    if not path.exists():
        return None
    try:
        conn = sqlite3.connect(path)
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            check = conn.execute("PRAGMA quick_check").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        return f"is not a readable SQLite database ({exc})"
    if version > SCHEMA_VERSION:
        return (
            f"was written by a newer diffgraph (schema version {version}; this version reads up to "
            f"{SCHEMA_VERSION})"
        )
    if check != "ok":
        return f"failed SQLite's integrity check ({check})"
    return None


def _move_aside(path: Path) -> Path:
    """Rename the database (and its -wal/-shm companions) to `<name>.bad-<time>`; returns the new path."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = path.with_name(f"{path.name}.bad-{stamp}")
    counter = 1
    while target.exists():
        target = path.with_name(f"{path.name}.bad-{stamp}-{counter}")
        counter += 1
    for suffix in ("-wal", "-shm"):
        companion = path.with_name(path.name + suffix)
        if companion.exists():
            companion.rename(target.with_name(target.name + suffix))
    path.rename(target)
    return target


def _migrate(conn: sqlite3.Connection) -> None:
    conn.executescript(_SCHEMA)
    columns = {row[1] for row in conn.execute("PRAGMA table_info(jobs)")}
    if "crashes" not in columns:
        conn.execute("ALTER TABLE jobs ADD COLUMN crashes INTEGER NOT NULL DEFAULT 0")
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")


def open_database(path: Path, on_bad: BadDatabase = "move") -> tuple[sqlite3.Connection, str | None]:
    """A connection to the queue database at path, and a note when a bad file was moved aside.

    A corrupt file or one from a newer version is renamed (kept for inspection) and a fresh queue
    starts, or, with on_bad="refuse", DatabaseRefused says what to do.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    note = None
    problem = _problem(path)
    if problem is not None:
        if on_bad == "refuse":
            raise DatabaseRefused(
                f"the queue database {path} {problem}. Move it elsewhere to start with an empty queue, "
                "or start with --bad-database move to have it renamed and kept"
            )
        moved = _move_aside(path)
        note = f"the queue database {path} {problem}; moved it to {moved} and started an empty queue"
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    # NORMAL in WAL mode survives a killed process; only a power cut may lose the last commits.
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=5000")
    _migrate(conn)
    return conn, note
