"""The CLI's txt2img stubs, with a sampler that can be told (through its positive text) to misbehave.

`crash-once:PATH` ends the worker process the first time (creating PATH marks it done),
`crash-always` ends every worker that runs it, `slow:PATH` creates PATH then takes about ten
seconds in small steps that honour cancellation.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from engine import ModelPaths, Registry
from tests.stub_pack import txt2img as stub_nodes


class ChaosKSampler(stub_nodes.KSampler):
    """KSampler whose positive text may ask it to crash its process or run slowly."""

    def run(self, ctx, inputs):
        text = str(inputs.positive.value)
        if text.startswith("crash-once:"):
            marker = Path(text.split(":", 1)[1])
            if not marker.exists():
                marker.write_text("crashed", encoding="utf-8")
                os._exit(1)
        elif text == "crash-always":
            os._exit(1)
        elif text.startswith("slow:"):
            Path(text.split(":", 1)[1]).write_text("started", encoding="utf-8")
            for step in range(200):
                time.sleep(0.05)
                ctx.progress(step + 1, 200)
        return super().run(ctx, inputs)


def registry_factory(model_paths: ModelPaths, input_dir: Any) -> Registry:
    """The stubs with the chaos sampler, checkpoint choices from the models folder."""
    nodes = [ChaosKSampler if cls is stub_nodes.KSampler else cls for cls in stub_nodes.ALL]
    return Registry(nodes, choices=lambda source: model_paths.list(source))


def server_registry_factory(model_paths: ModelPaths, input_dir: Any) -> Registry:
    """The server tests' stub pack (render with progress and previews, save, fail)."""
    from tests.stub_pack.server_nodes import stub_registry

    return stub_registry()
