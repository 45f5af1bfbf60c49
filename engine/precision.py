"""Compute precision of a run: the process default ($DIFFGRAPH_PRECISION) and a prompt's own choice.

Kept free of torch so the executor and the server can resolve a prompt's precision without loading it.
A prompt picks its precision with `extra_data["diffgraph_precision"]` ("exact" or "fast"); without it
the process default applies. ComfyUI clients never send the key, so they get the default.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Literal

from engine.errors import DiffgraphError

PRECISION_ENV = "DIFFGRAPH_PRECISION"
# extra_data key with which one prompt asks for its own precision.
PRECISION_KEY = "diffgraph_precision"
Precision = Literal["exact", "fast"]
PRECISIONS: tuple[Precision, ...] = ("exact", "fast")


class PrecisionError(DiffgraphError):
    """A precision name that is neither "exact" nor "fast"."""

    code = "invalid_precision"


def parse_precision(name: str | None) -> Precision:
    """The precision named by an argument or $DIFFGRAPH_PRECISION ("exact" when neither is set)."""
    value = name or os.environ.get(PRECISION_ENV) or "exact"
    if value not in PRECISIONS:
        raise PrecisionError(f"unknown precision {value!r}; use one of {', '.join(PRECISIONS)}")
    return value  # type: ignore[return-value]


def default_precision(models: Any) -> Precision:
    """The precision of prompts that name none: the model store's policy, else $DIFFGRAPH_PRECISION."""
    policy_precision = getattr(getattr(models, "policy", None), "precision", None)
    return parse_precision(policy_precision)


def requested_precision(extra_data: Mapping[str, Any] | None, models: Any = None) -> Precision:
    """The precision a prompt runs in: its extra_data's `diffgraph_precision`, else the default."""
    value = (extra_data or {}).get(PRECISION_KEY)
    if value is None or value == "":
        return default_precision(models)
    if not isinstance(value, str):
        raise PrecisionError(f"{PRECISION_KEY} must be one of {', '.join(PRECISIONS)}, not {value!r}")
    return parse_precision(value)


def cache_salt(precision: Precision) -> str:
    """What a run's precision adds to every cache key: nothing for exact, so exact keys stay as they were."""
    return "" if precision == "exact" else f"precision={precision}"
