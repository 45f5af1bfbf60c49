"""ComfyUI's V3 UI outputs (`comfy_api.latest.ui`): what execute() may return for the client to show."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image as PILImage

from nodes.comfy_compat.runtime import environment


class SavedResult(dict):  # type: ignore[type-arg]
    """A file the node wrote: {filename, subfolder, type}."""

    def __init__(self, filename: str, subfolder: str, type: Any):  # noqa: A002 - the API's name
        kind = getattr(type, "value", type)
        super().__init__(filename=filename, subfolder=subfolder, type=kind)


class SavedImages:
    """Images the node saved."""

    def __init__(self, results: list[SavedResult], is_animated: bool = False):
        self.results = results
        self.is_animated = is_animated

    def as_dict(self) -> dict[str, Any]:
        """The UI dict."""
        data: dict[str, Any] = {"images": list(self.results)}
        if self.is_animated:
            data["animated"] = (True,)
        return data


class PreviewImage:
    """Preview pictures of an IMAGE [B,H,W,C] tensor, written to the temp folder."""

    def __init__(self, image: Any, animated: bool = False, cls: Any = None, **_: Any):
        folder = Path(environment().temp_dir)
        folder.mkdir(parents=True, exist_ok=True)
        stem = f"preview_{secrets.token_hex(4)}"
        self.values = []
        for index, frame in enumerate(image):
            pixels = np.clip(frame.cpu().float().numpy() * 255.0, 0, 255).astype(np.uint8)
            if pixels.ndim == 2:
                pixels = np.stack([pixels] * 3, axis=-1)
            name = f"{stem}_{index:05}.png"
            PILImage.fromarray(pixels).save(folder / name, compress_level=1)
            self.values.append(SavedResult(name, "", "temp"))
        self.animated = animated

    def as_dict(self) -> dict[str, Any]:
        """The UI dict."""
        return {"images": self.values, "animated": (self.animated,)}


class PreviewMask(PreviewImage):
    """Preview pictures of a MASK [B,H,W] tensor."""


class PreviewText:
    """Text shown on the node."""

    def __init__(self, value: str, **_: Any):
        self.value = value

    def as_dict(self) -> dict[str, Any]:
        """The UI dict."""
        return {"text": (self.value,)}
