"""ComfyUI's `comfy.comfy_types`: the IO type names and typing helpers V1 packs annotate with."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, TypedDict


class IO(StrEnum):
    """Type names of links; comma-joined names accept any of them, "*" accepts everything."""

    STRING = "STRING"
    IMAGE = "IMAGE"
    MASK = "MASK"
    LATENT = "LATENT"
    BOOLEAN = "BOOLEAN"
    INT = "INT"
    FLOAT = "FLOAT"
    COMBO = "COMBO"
    CONDITIONING = "CONDITIONING"
    SAMPLER = "SAMPLER"
    SIGMAS = "SIGMAS"
    GUIDER = "GUIDER"
    NOISE = "NOISE"
    CLIP = "CLIP"
    CONTROL_NET = "CONTROL_NET"
    VAE = "VAE"
    MODEL = "MODEL"
    CLIP_VISION = "CLIP_VISION"
    CLIP_VISION_OUTPUT = "CLIP_VISION_OUTPUT"
    STYLE_MODEL = "STYLE_MODEL"
    GLIGEN = "GLIGEN"
    UPSCALE_MODEL = "UPSCALE_MODEL"
    AUDIO = "AUDIO"
    VIDEO = "VIDEO"
    ANY = "*"
    NUMBER = "FLOAT,INT"
    PRIMITIVE = "STRING,FLOAT,INT,BOOLEAN"

    def __str__(self) -> str:
        return self.value

    def __ne__(self, value: object) -> bool:
        # ComfyUI compares types by this rule so that a wildcard or union matches its members.
        if not isinstance(value, str):
            return True
        if self.value == "*" or value == "*":
            return False
        return not (set(self.value.split(",")) & set(value.split(",")))

    __hash__ = str.__hash__


class InputTypeOptions(TypedDict, total=False):
    """Options of one input (default, min, max, tooltip, lazy...)."""

    default: Any
    min: float
    max: float
    step: float
    tooltip: str
    lazy: bool
    forceInput: bool
    rawLink: bool
    multiline: bool


class InputTypeDict(TypedDict, total=False):
    """The dict INPUT_TYPES returns."""

    required: dict[str, tuple[Any, ...]]
    optional: dict[str, tuple[Any, ...]]
    hidden: dict[str, Any]


class ComfyNodeABC:
    """Base class V1 packs may inherit from; it only documents the protocol."""

    DESCRIPTION: str = ""
    CATEGORY: str = "sd"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypeDict:  # noqa: N802 - the protocol's name
        """The node's inputs."""
        raise NotImplementedError


class CheckLazyMixin:
    """Default check_lazy_status: ask for every lazy input that is still missing."""

    def check_lazy_status(self, **kwargs: Any) -> list[str]:
        """Names of inputs whose value is None."""
        return [name for name, value in kwargs.items() if value is None]


class FileLocator(TypedDict):
    """A file in ComfyUI's folders, as UI outputs name them."""

    filename: str
    subfolder: str
    type: str
