"""Files a worker wrote, brought into the driver's folders under the names a local run gives them."""

from __future__ import annotations

import copy
import os
import re
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# `{base}_{counter:05}_{suffix}`: how every output writer names files (ComfyUI's rule).
COUNTED_NAME = re.compile(r"^(?P<base>.+)_(?P<counter>\d{5,})_(?P<suffix>.*)$")
FILE_KINDS = ("output", "temp")
# Under a shared output folder: where workers write before their files get their final names.
STAGING = ".diffgraph-staging"


@dataclass
class FileRecord:
    """One file a node listed in its UI output: its UI address on the worker, and its bytes or path.

    `data` carries the bytes when the driver cannot see the worker's disk; `path` is where the worker
    left it on a folder shared with the driver.
    """

    kind: str
    subfolder: str
    filename: str
    data: bytes | None = None
    path: str | None = None

    @property
    def address(self) -> tuple[str, str, str]:
        """(kind, subfolder, filename) as the node's UI output names it."""
        return (self.kind, self.subfolder, self.filename)


def ui_addresses(ui: dict[str, Any] | None) -> list[tuple[str, str, str]]:
    """(kind, subfolder, filename) of every output or temp file a UI output names."""
    found = []
    for items in (ui or {}).values():
        if not isinstance(items, list):
            continue
        for item in items:
            if isinstance(item, dict) and isinstance(item.get("filename"), str):
                kind = item.get("type", "output")
                if kind in FILE_KINDS:
                    found.append((kind, str(item.get("subfolder") or ""), item["filename"]))
    return found


def rename_ui(ui: dict[str, Any] | None, names: dict[tuple[str, str, str], str]) -> dict[str, Any] | None:
    """A copy of a UI output with every file renamed as committed (names: address -> new filename)."""
    if not ui:
        return ui
    renamed = copy.deepcopy(ui)
    for items in renamed.values():
        if not isinstance(items, list):
            continue
        for item in items:
            if isinstance(item, dict) and isinstance(item.get("filename"), str):
                address = (item.get("type", "output"), str(item.get("subfolder") or ""), item["filename"])
                item["filename"] = names.get(address, item["filename"])
    return renamed


class OutputCommitter:
    """Writes workers' files into the driver's output and temp folders, numbering as a local run would.

    A worker numbers from 1 in a folder of its own; here each counted name gets the next free
    counter of its base in the real folder, so items land as `ComfyUI_00001_.png`, `_00002_`...
    in the order they are committed, and never replace an existing file.
    """

    def __init__(self, output_dir: Path, temp_dir: Path | None = None):
        self.roots = {"output": Path(output_dir), "temp": Path(temp_dir or output_dir)}
        self._lock = threading.Lock()

    def folder(self, kind: str, subfolder: str) -> Path:
        """The driver folder of a UI address; refuses subfolders that leave it."""
        root = self.roots[kind].resolve()
        folder = (root / subfolder).resolve()
        if folder != root and root not in folder.parents:
            raise ValueError(f"a worker named a file outside the {kind} folder: {subfolder!r}")
        return folder

    def commit(self, records: list[FileRecord]) -> dict[tuple[str, str, str], Path]:
        """Write (or move, for shared paths) every record; returns address -> final path."""
        placed: dict[tuple[str, str, str], Path] = {}
        # Counters of one node's files stay in their order (a batch of 4 images: 1, 2, 3, 4).
        ordered = sorted(records, key=lambda r: (r.kind, r.subfolder, _sort_key(r.filename)))
        with self._lock:
            for record in ordered:
                folder = self.folder(record.kind, record.subfolder)
                folder.mkdir(parents=True, exist_ok=True)
                placed[record.address] = self._place(folder, record)
        return placed

    def _place(self, folder: Path, record: FileRecord) -> Path:
        match = COUNTED_NAME.match(record.filename)
        if match is None:
            target = folder / record.filename  # a fixed name: replaced, as a local run would
            _write(target, record, exclusive=False)
            return target
        base, suffix = match["base"], match["suffix"]
        counter = next_counter(folder, base)
        while True:
            target = folder / f"{base}_{counter:05}_{suffix}"
            try:
                _write(target, record, exclusive=True)
                return target
            except FileExistsError:
                counter += 1  # another process wrote this name meanwhile

    def remove(self, paths: list[Path]) -> None:
        """Delete committed files (a lost run's partial outputs that are going to be re-run)."""
        for path in paths:
            path.unlink(missing_ok=True)


def next_counter(folder: Path, base: str) -> int:
    """1 + the largest N among files named `<base>_N...` in folder, else 1."""
    highest = 0
    for entry in os.scandir(folder):
        if entry.name.startswith(base + "_"):
            digits = entry.name[len(base) + 1 :].split("_")[0]
            if digits.isdigit():
                highest = max(highest, int(digits))
    return highest + 1


def _sort_key(filename: str) -> tuple[str, int, str]:
    match = COUNTED_NAME.match(filename)
    if match is None:
        return (filename, 0, "")
    return (match["base"], int(match["counter"]), match["suffix"])


def _write(target: Path, record: FileRecord, *, exclusive: bool) -> None:
    if record.data is not None:
        with open(target, "xb" if exclusive else "wb") as handle:
            handle.write(record.data)
        return
    if record.path is None:
        raise ValueError(f"file record {record.filename!r} has neither bytes nor a path")
    if exclusive:
        # Claim the name first so a concurrent writer cannot take it, then move the file over it.
        with open(target, "xb"):
            pass
    shutil.move(record.path, target)
