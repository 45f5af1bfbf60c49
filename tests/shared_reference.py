"""Where the workplace's read-only reference data lives: `../shared/reference/` beside the checkout.

`DIFFGRAPH_SHARED_REFERENCE` points elsewhere (a CI cache, another checkout layout). Tests that need
it skip when it is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

SHARED_REFERENCE = Path(
    os.environ.get("DIFFGRAPH_SHARED_REFERENCE")
    or Path(__file__).resolve().parents[2] / "shared" / "reference"
)
# ComfyUI's outputs per case: workflow_api.json, image.png, latents.
CASES = SHARED_REFERENCE / "cases"
# Regenerates the full-size random SD1.5 checkpoint ComfyUI produced the cases from.
MAKE_CHECKPOINT_SCRIPT = SHARED_REFERENCE / "make_random_checkpoint.py"
