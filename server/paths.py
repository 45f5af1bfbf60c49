"""Client-supplied folder and file names: the engine's single resolver, re-exported for the routes."""

from __future__ import annotations

from engine.safe_paths import PathRefused, resolve_inside, resolve_relative

__all__ = ["PathRefused", "resolve_inside", "resolve_relative", "split_relative"]


def split_relative(path: str) -> tuple[str, str]:
    """Split 'a/b/c.json' into ('a/b', 'c.json') for resolve_inside."""
    head, _, tail = path.rpartition("/")
    return head, tail
