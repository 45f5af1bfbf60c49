"""The per-run context handed to each node: progress, cancellation, directories, models, UI output."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import Interrupted
from engine.events import EventSink, PreviewImage, StepLatent
from engine.precision import Precision, requested_precision

# extra_data key a server sets when a client asked to receive every sampler step's latent.
LATENT_STREAM_KEY = "diffgraph_stream_latents"


class CancelToken:
    """A thread-safe flag a client sets to stop the current prompt."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        """Ask the running prompt to stop at the next check."""
        self._event.set()

    def reset(self) -> None:
        """Clear the flag before the next prompt."""
        self._event.clear()

    @property
    def cancelled(self) -> bool:
        """True once cancel() was called."""
        return self._event.is_set()


@dataclass
class Environment:
    """Where a run reads and writes: directories and the model store, fixed for an executor's life."""

    output_dir: Path
    temp_dir: Path
    input_dir: Path
    models: Any = None  # engine.model_store.ModelStore; typed loosely to keep this module light
    model_paths: Any = None  # engine.model_paths.ModelPaths
    # Largest side of live preview pictures: nodes make them this size, nobody resizes them again.
    preview_size: int = 512

    def __post_init__(self) -> None:
        self.output_dir = Path(self.output_dir)
        self.temp_dir = Path(self.temp_dir)
        self.input_dir = Path(self.input_dir)


def default_model_store() -> Any:
    """The engine's ModelStore for an Environment (imported on first use: it pulls in torch)."""
    from engine.model_store import ModelStore

    return ModelStore()


@dataclass
class RunContext:
    """What one node sees while it runs. Created by the executor, one per node execution."""

    env: Environment
    prompt_id: str
    node_id: str
    display_node_id: str
    prompt: dict[str, Any]
    extra_data: dict[str, Any]
    linked_outputs: frozenset[str]
    _cancel: CancelToken
    _emit: EventSink
    _on_progress: Callable[[str, int, int], None]
    ui: dict[str, Any] | None = None
    _preview_enabled: bool = field(default=True)
    # The running prompt with the nodes expansions added (engine.flow.DynamicPrompt); dynamic runs only.
    dynprompt: Any = None
    # Which item of a list-mapped input this call handles (None outside list mapping).
    list_index: int | None = None

    @property
    def output_dir(self) -> Path:
        """The directory output nodes write into."""
        return self.env.output_dir

    @property
    def temp_dir(self) -> Path:
        """The directory for preview files (wiped by the server at start)."""
        return self.env.temp_dir

    @property
    def input_dir(self) -> Path:
        """The directory uploads land in and LoadImage reads from."""
        return self.env.input_dir

    @property
    def models(self) -> Any:
        """The model store: loaded models are kept and reused across prompts."""
        return self.env.models

    @property
    def model_paths(self) -> Any:
        """Model folders (checkpoints/, vae/, loras/...)."""
        return self.env.model_paths

    @property
    def preview_size(self) -> int:
        """Largest side of the pictures given to `preview` (they are sent as they are)."""
        return self.env.preview_size

    @property
    def extra_pnginfo(self) -> dict[str, Any]:
        """Metadata to embed in written files (normally {"workflow": <UI JSON>})."""
        info = self.extra_data.get("extra_pnginfo")
        return info if isinstance(info, dict) else {}

    @property
    def precision(self) -> Precision:
        """The compute precision this prompt asked for (extra_data), else the process default.

        Model loaders pass it on, so a fast and an exact prompt never share a denoiser of another dtype.
        """
        return requested_precision(self.extra_data, self.env.models)

    @property
    def previews_enabled(self) -> bool:
        """Whether anybody wants live previews; nodes skip preview work when False."""
        return self._preview_enabled

    def is_linked(self, output_name: str) -> bool:
        """True when a downstream node consumes this output (lets nodes skip optional work)."""
        return output_name in self.linked_outputs

    def check_cancelled(self) -> None:
        """Raise Interrupted if the user cancelled; call it inside every long loop."""
        if self._cancel.cancelled:
            raise Interrupted()

    def progress(self, value: int, maximum: int) -> None:
        """Report step progress (value of maximum) and honour cancellation."""
        self.check_cancelled()
        self._on_progress(self.node_id, value, maximum)

    def preview(self, image: Any) -> None:
        """Send a live preview picture (a PIL image) for this node."""
        if self._preview_enabled:
            self._emit(PreviewImage(prompt_id=self.prompt_id, node_id=self.node_id, image=image))

    @property
    def latents_requested(self) -> bool:
        """Whether a client asked for every step's latent (the server sets LATENT_STREAM_KEY in extra_data)."""
        return bool(self.extra_data.get(LATENT_STREAM_KEY))

    def step_latent(self, step: int, steps: int, latents: Any) -> None:
        """Hand one step's latent (VAE space, CPU float32 [B, C, h, w]) to clients that asked for it."""
        if self.latents_requested:
            self._emit(
                StepLatent(
                    prompt_id=self.prompt_id, node_id=self.node_id, step=step, steps=steps, latents=latents
                )
            )

    def set_ui(self, ui: dict[str, Any]) -> None:
        """Publish this node's UI output (e.g. {"images": [...]}); sent as `executed` and cached."""
        self.ui = ui
