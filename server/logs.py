"""The server's recent log lines for the web client's logs panel, and their live stream to subscribers."""

from __future__ import annotations

import logging
import shutil
import threading
from collections import deque
from collections.abc import Callable
from datetime import datetime
from typing import Any

LOG_CAPACITY = 300
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def terminal_size() -> dict[str, int]:
    """The panel's size hint, as ComfyUI sends it (the server's terminal, else 80x24)."""
    size = shutil.get_terminal_size((80, 24))
    return {"cols": size.columns, "rows": size.lines}


class LogBuffer(logging.Handler):
    """A logging handler that keeps the last lines and hands each new one to a listener.

    Unlike ComfyUI it does not replace sys.stdout: it sees what goes through `logging`, which is every
    message diffgraph writes.
    """

    def __init__(self, capacity: int = LOG_CAPACITY):
        super().__init__(level=logging.INFO)
        self.setFormatter(logging.Formatter(LOG_FORMAT))
        self.entries: deque[dict[str, str]] = deque(maxlen=capacity)
        self.listener: Callable[[list[dict[str, str]]], None] | None = None
        self._entries_lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        """Keep the formatted record (with its traceback) and pass it on."""
        try:
            text = self.format(record)
        except (TypeError, ValueError):  # a bad %-format in somebody's log call must not kill the caller
            self.handleError(record)
            return
        entry = {"t": datetime.fromtimestamp(record.created).isoformat(), "m": text + "\n"}
        with self._entries_lock:
            self.entries.append(entry)
        listener = self.listener
        if listener is not None:
            listener([entry])

    def snapshot(self) -> list[dict[str, str]]:
        """The kept entries, oldest first."""
        with self._entries_lock:
            return list(self.entries)

    def text(self) -> str:
        """All kept lines as one string, as ComfyUI's /internal/logs answers."""
        return "".join(f"{e['t']} - {e['m']}" for e in self.snapshot())

    def raw(self) -> dict[str, Any]:
        """{entries, size}, as /internal/logs/raw answers."""
        return {"entries": self.snapshot(), "size": terminal_size()}
