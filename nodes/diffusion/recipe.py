"""What a loaded model component is made of: its file, family, component and weight patches (LoRA, merges).

Recipes are plain frozen values: the model store keys loaded modules by them, and handles on graph
edges carry them, so they sit below both the loader and the handles.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum
from typing import Any, Literal

Component = Literal["unet", "clip", "vae"]


class Variant(Enum):
    """Where a component's weights come from, which decides how it is read."""

    CHECKPOINT = "checkpoint"  # one single-file checkpoint (original LDM layout) holding every part
    DIFFUSERS = "diffusers"  # a diffusers folder: one subfolder per part
    VAE_FILE = "vae_file"  # a standalone VAE file (LDM or diffusers key names)
    DIFFUSION_FILE = "diffusion_file"  # a standalone diffusion model (models/diffusion_models, unet)
    TEXT_ENCODERS = "text_encoders"  # one to three standalone text encoder files (`paths`)


@dataclass(frozen=True)
class LoraPatch:
    """One LoRA file applied with a strength (0 disables it)."""

    path: str
    strength: float


@dataclass(frozen=True)
class MergePatch:
    """Another model's weights blended in: w * keep + other * (1 - keep) where both have a tensor.

    ComfyUI's ModelMergeSimple (keep is its ratio): `other` is the second model's whole recipe, its own
    patches included.
    """

    other: ComponentRecipe
    keep: float


WeightPatch = LoraPatch | MergePatch


@dataclass(frozen=True)
class ComponentRecipe:
    """Everything needed to load one component again: source, family, component and patches."""

    path: str
    family: str
    component: Component
    variant: Variant = Variant.CHECKPOINT
    patches: tuple[WeightPatch, ...] = ()
    # How a standalone diffusion model's weights are stored in memory (UNETLoader's weight_dtype).
    weight_dtype: str = "default"
    # Every file of a TEXT_ENCODERS recipe in the loader's order (`path` is the first).
    paths: tuple[str, ...] = ()
    # The run precision a denoiser was loaded for ("fast" only where it changes the dtype, see
    # loader.effective_precision): exact and fast prompts never share a module of the wrong dtype.
    precision: str = "exact"

    @property
    def store_key(self) -> tuple[Any, ...]:
        """The model store key: identical recipes share one loaded module."""
        key: tuple[Any, ...] = (
            "diffgraph",
            self.component,
            self.path,
            self.family,
            self.variant,
            self.patches,
        )
        if self.paths:
            key = (*key, self.paths)
        if self.precision != "exact":
            key = (*key, "precision", self.precision)
        return key if self.weight_dtype == "default" else (*key, self.weight_dtype)

    def base(self) -> ComponentRecipe:
        """The same recipe without weight patches (the cached base model)."""
        return replace(self, patches=())

    def with_patch(self, patch: WeightPatch) -> ComponentRecipe:
        """A new recipe with one more weight patch applied on top."""
        return replace(self, patches=(*self.patches, patch))
