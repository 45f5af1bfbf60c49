"""The node a ComfyUI-style pack is running for, so module-level helpers (ProgressBar...) can reach it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from engine import Environment, RunContext

_CURRENT: ContextVar[RunContext | None] = ContextVar("comfy_compat_current_node", default=None)


class CompatState:
    """Folders and the server hook the shims read; set by the composition root before packs load."""

    env: Environment | None = None
    # Called with (event type, data) for PromptServer.send_sync outside any running node.
    broadcast: Any = None


def current() -> RunContext | None:
    """The context of the pack node running on this thread or task, or None."""
    return _CURRENT.get()


@contextmanager
def running(ctx: RunContext) -> Iterator[None]:
    """Make ctx the current node for the duration of a pack function call."""
    token = _CURRENT.set(ctx)
    try:
        yield
    finally:
        _CURRENT.reset(token)


def run_coroutine(coro: Any) -> Any:
    """Run a pack's coroutine to completion from synchronous code (loading, validation hooks)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with ThreadPoolExecutor(max_workers=1) as pool:  # this thread runs a loop already
        return pool.submit(asyncio.run, coro).result()


def environment() -> Environment:
    """The folders packs see; refuses use before the composition root configured them."""
    if CompatState.env is None:
        raise RuntimeError("custom-node folders are not configured; load packs through load_custom_nodes()")
    return CompatState.env
