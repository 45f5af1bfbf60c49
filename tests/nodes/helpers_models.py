"""Helpers for model-stack node tests: a RunContext over the tiny models directory."""

from __future__ import annotations

from pathlib import Path

from engine import CancelToken, Environment, ModelPaths, RunContext


def make_ctx(models_dir: Path, store, tmp: Path) -> RunContext:
    """A RunContext whose model paths point at `models_dir` and whose store is `store`."""
    env = Environment(tmp, tmp, tmp, models=store, model_paths=ModelPaths(models_dir))
    return RunContext(
        env=env,
        prompt_id="p",
        node_id="1",
        display_node_id="1",
        prompt={},
        extra_data={},
        linked_outputs=frozenset(),
        _cancel=CancelToken(),
        _emit=lambda event: None,
        _on_progress=lambda node, value, maximum: None,
    )
