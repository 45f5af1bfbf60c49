"""Where the workplace's read-only reference data lives: `../shared/reference/` beside the checkout.

`DIFFGRAPH_SHARED_REFERENCE` points elsewhere (a CI cache, another checkout layout). This is the only
module that knows the path; tests that need the data carry `needs_reference` and are skipped, with the
missing folder named, when it is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_REFERENCE = Path(
    os.environ.get("DIFFGRAPH_SHARED_REFERENCE")
    or Path(__file__).resolve().parents[2] / "shared" / "reference"
)
# ComfyUI's outputs per case: workflow_api.json, image.png, latents.
CASES = SHARED_REFERENCE / "cases"
# FLUX.1 / SD3.5 reference: published layouts, the random-weight rule's sha256 table, ComfyUI cases.
FLOW = SHARED_REFERENCE / "flow"
# Regenerates the full-size random SD1.5 checkpoint ComfyUI produced the cases from.
MAKE_CHECKPOINT_SCRIPT = SHARED_REFERENCE / "make_random_checkpoint.py"
MISSING_REASON = (
    f"ComfyUI reference data not found at {SHARED_REFERENCE} (set DIFFGRAPH_SHARED_REFERENCE to its folder)"
)
needs_reference = pytest.mark.skipif(not CASES.is_dir(), reason=MISSING_REASON)


def case_names(pattern: str = "*") -> list[str]:
    """Names of the recorded cases matching a glob (none when the data is absent)."""
    return sorted(p.name for p in CASES.glob(pattern) if p.is_dir())
