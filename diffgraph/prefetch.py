"""Read-ahead of the model files a workflow names, started before the model libraries are imported.

`diffgraph run` spends seconds importing torch, diffusers and transformers before its first node runs.
When a checkpoint is not in the page cache yet, the kernel can read it from disk during that time:
`prefetch_workflow_models` scans the workflow JSON for model file names, finds them in the models
folders and asks the kernel to read them ahead (posix_fadvise WILLNEED). It only advises: nothing is
allocated or read in this process, and a name that matches no file is left to validation to report.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from engine.model_paths import FOLDERS, MODEL_EXTENSIONS, ModelPathError, ModelPaths

log = logging.getLogger(__name__)
# Workflow files larger than this are not scanned (they are not plain API or UI JSON).
MAX_WORKFLOW_BYTES = 16 << 20


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
    """Ask the kernel to read a file into the page cache in the background; False where it cannot."""
    if not hasattr(os, "posix_fadvise"):
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_WILLNEED)
    finally:
        os.close(fd)
    return True


def prefetch_workflow_models(workflow_file: str | Path, paths: ModelPaths) -> list[Path]:
    """Advise read-ahead for the model files a workflow JSON file names; returns those files.

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
    advised = [path for path in files if advise_read_ahead(path)]
    if advised:
        log.debug("reading ahead %s", ", ".join(p.name for p in advised))
    return advised
