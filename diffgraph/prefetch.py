"""Read-ahead of the model files a workflow names, started before the model libraries are imported.

`diffgraph run` spends seconds importing torch, diffusers and transformers before its first node runs.
When a checkpoint is not in the page cache yet, the kernel can read it from disk during that time:
`prefetch_workflow_models` scans the workflow JSON for model file names, finds them in the models
folders and, on a background thread, asks the kernel to read them ahead (posix_fadvise WILLNEED, one
8 MiB chunk per call: Linux caps one call at its read-ahead window, so a single call for the whole
file reads only its first few MiB). It only advises: nothing is copied into this process, and a name
that matches no file is left to validation to report.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from engine.model_paths import FOLDERS, MODEL_EXTENSIONS, ModelPathError, ModelPaths

log = logging.getLogger(__name__)
# Workflow files larger than this are not scanned (they are not plain API or UI JSON).
MAX_WORKFLOW_BYTES = 16 << 20
# Bytes per read-ahead request (see the module docstring).
ADVICE_CHUNK = 8 << 20


def model_names(value: Any) -> Iterator[str]:
    """Every string in a parsed workflow that ends like a model file name (API inputs or UI widgets)."""
    stack = [value]  # iterative: a hostile workflow may nest deeper than Python's recursion limit
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if item.lower().endswith(MODEL_EXTENSIONS):
                yield item
        elif isinstance(item, dict):
            stack.extend(reversed(list(item.values())))
        elif isinstance(item, list):
            stack.extend(reversed(item))


def model_files(workflow: Any, paths: ModelPaths) -> list[Path]:
    """The existing model files the workflow names, each once, in the order first named."""
    found: dict[Path, None] = {}
    for name in model_names(workflow):
        for folder in FOLDERS:
            try:
                path = paths.resolve(folder, name)
            except ModelPathError:
                continue
            if path.is_file():
                found[path] = None
    return list(found)


def advise_read_ahead(path: Path) -> bool:
    """Ask the kernel to read a whole file into the page cache, chunk by chunk; False where it cannot."""
    if not hasattr(os, "posix_fadvise"):
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        for offset in range(0, size, ADVICE_CHUNK):
            os.posix_fadvise(fd, offset, min(ADVICE_CHUNK, size - offset), os.POSIX_FADV_WILLNEED)
    finally:
        os.close(fd)
    return True


def _advise_all(files: list[Path]) -> None:
    for path in files:
        try:
            advise_read_ahead(path)
        except OSError as exc:  # only a hint: the loader reads the file itself and reports real errors
            log.debug("read-ahead of %s not possible: %s", path, exc)


def prefetch_workflow_models(workflow_file: str | Path, paths: ModelPaths, wait: bool = False) -> list[Path]:
    """Start reading ahead the model files a workflow JSON file names (background thread); returns them.

    `wait` joins the thread (tests).

    Anything that is not a readable JSON workflow is skipped (a PNG or video carrying one is read
    later, with the node library): this is an optimisation only, and loading reports real problems.
    """
    source = Path(workflow_file)
    if source.suffix.lower() != ".json" or not source.is_file() or source.stat().st_size > MAX_WORKFLOW_BYTES:
        return []
    try:
        workflow = json.loads(source.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        log.debug("not prefetching models of %s: %s", source, exc)
        return []
    files = model_files(workflow, paths)
    worker = start_read_ahead(files)
    if worker is not None and wait:
        worker.join()
    return files


def start_read_ahead(files: list[Path]) -> threading.Thread | None:
    """Advise read-ahead of `files` on a daemon thread (None when there is nothing to do)."""
    if not files or not hasattr(os, "posix_fadvise"):
        return None
    # The advice calls block while the kernel queues reads: off the thread that imports the libraries.
    worker = threading.Thread(target=_advise_all, args=(files,), name="diffgraph-prefetch", daemon=True)
    worker.start()
    log.debug("reading ahead %s", ", ".join(p.name for p in files))
    return worker
