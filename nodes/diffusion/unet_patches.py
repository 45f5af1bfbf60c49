"""Model patches on a MODEL edge: frozen patch values and the per-run hook table they compile into.

A `DiffusionModel` carries `patches`, an ordered tuple of `ModelPatch` values (frozen dataclasses whose
fields are the node's settings, so they hash and compare by value and take part in the handle's
identity). Nothing is applied to a loaded module: at sampling time `compile_patches` lets each patch,
in order, register functions on a fresh `ModelOptions` (ComfyUI's `model_options`), and the sampler and
a run-private view of the UNet (`unet_view.UnetView`) call them at the hook points below.

Hook points and their call contracts (ComfyUI's names and argument order; `extra` is the per-call dict
described in docs/model_patches.md):
  attn1_patch / attn2_patch          (n, context, value, extra) -> (n, context, value), before attention
  attn1 / attn2 replace              (q, k, v, extra) -> out, [B, L, heads*dim_head] before to_out
  attn1_output_patch / attn2_output_patch   (out, extra) -> out, after to_out, before the residual
  input_block_patch                  (h, extra) -> h, after each input block (skip and flow)
  middle_block_patch                 (h, extra) -> h, after the middle block
  output_block_patch                 (h, hsp, extra) -> (h, hsp), before each output block's concat
  model_function_wrapper             (apply_model, {"input", "timestep", "c", "cond_or_uncond"}) -> x0
  sampler_cfg_function               (args) -> x - guided x0 (one; the last set wins)
  sampler_pre_cfg_function           (args) -> [cond x0, uncond x0] (a list, in order)
  sampler_post_cfg_function          (args) -> guided x0 (a list, in order)
  diffusion_model_wrappers           (call, x, {"sigmas", "uuids"}) -> raw output, around each model call
  evaluation_callbacks               () -> None, as each guidance evaluation starts
Lists append in patch order and replacements overwrite, which is ComfyUI's stacking order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

PatchList = Literal[
    "attn1_patch",
    "attn2_patch",
    "attn1_output_patch",
    "attn2_output_patch",
    "input_block_patch",
    "middle_block_patch",
    "output_block_patch",
]
AttnName = Literal["attn1", "attn2"]
BlockName = Literal["input", "middle", "output"]
# (block, number) targets every transformer of a block; (block, number, index) one of them.
ReplaceKey = tuple[str, int] | tuple[str, int, int]
PatchFn = Callable[..., Any]


@dataclass(frozen=True)
class ModelInfo:
    """Facts about the loaded model that patches may depend on (ComfyUI's unet_config values).

    `model_channels` is 0 for transformer models; `percent_to_sigma` is the run's schedule mapping and
    `dtype` the model's compute dtype.
    """

    model_channels: int
    percent_to_sigma: Callable[[float], float] | None = None
    dtype: torch.dtype = torch.float32


@dataclass
class ModelOptions:
    """The hook table one sampling run calls (ComfyUI's model_options); built per run, never shared.

    `copy()` gives an independent table, so a guidance function can add a replacement for one extra
    UNet call (as Perturbed-Attention Guidance does) without touching the run's own table.
    """

    patches: dict[str, list[PatchFn]] = field(default_factory=dict)
    replace: dict[str, dict[ReplaceKey, PatchFn]] = field(default_factory=dict)
    model_function_wrapper: PatchFn | None = None
    sampler_cfg_function: PatchFn | None = None
    sampler_pre_cfg_function: list[PatchFn] = field(default_factory=list)
    sampler_post_cfg_function: list[PatchFn] = field(default_factory=list)
    disable_cfg1_optimization: bool = False
    # (call, x, {"sigmas", "uuids"}) -> output around each raw diffusion-model call, first = outermost.
    diffusion_model_wrappers: list[PatchFn] = field(default_factory=list)
    # Called as each guidance evaluation (calc_cond_batch) starts.
    evaluation_callbacks: list[Callable[[], None]] = field(default_factory=list)

    @property
    def has_unet_hooks(self) -> bool:
        """Whether any function hooks into the UNet's blocks or attention (UNet models only)."""
        return bool(self.patches or self.replace)

    def copy(self) -> ModelOptions:
        """An independent copy (lists and dicts copied; the functions themselves shared)."""
        return ModelOptions(
            patches={k: list(v) for k, v in self.patches.items()},
            replace={k: dict(v) for k, v in self.replace.items()},
            model_function_wrapper=self.model_function_wrapper,
            sampler_cfg_function=self.sampler_cfg_function,
            sampler_pre_cfg_function=list(self.sampler_pre_cfg_function),
            sampler_post_cfg_function=list(self.sampler_post_cfg_function),
            disable_cfg1_optimization=self.disable_cfg1_optimization,
            diffusion_model_wrappers=list(self.diffusion_model_wrappers),
            evaluation_callbacks=list(self.evaluation_callbacks),
        )

    def add_patch(self, name: PatchList, fn: PatchFn) -> None:
        """Append a function to one of the list hook points."""
        self.patches.setdefault(name, []).append(fn)

    def set_replace(
        self, name: AttnName, fn: PatchFn, block: BlockName, number: int, index: int | None = None
    ) -> None:
        """Replace the attention of one block (all its transformers, or the one at `index`)."""
        key: ReplaceKey = (block, number) if index is None else (block, number, index)
        self.replace.setdefault(name, {})[key] = fn

    def with_replace(
        self, name: AttnName, fn: PatchFn, block: BlockName, number: int, index: int | None = None
    ) -> ModelOptions:
        """A copy with one more attention replacement (the original is unchanged)."""
        out = self.copy()
        out.set_replace(name, fn, block, number, index)
        return out

    def set_cfg_function(self, fn: PatchFn, disable_cfg1_optimization: bool = False) -> None:
        """Set the guidance combination (replaces an earlier one)."""
        self.sampler_cfg_function = fn
        self.disable_cfg1_optimization |= disable_cfg1_optimization

    def add_pre_cfg_function(self, fn: PatchFn, disable_cfg1_optimization: bool = False) -> None:
        """Append a function that sees (and may change) the cond/uncond predictions before guidance."""
        self.sampler_pre_cfg_function.append(fn)
        self.disable_cfg1_optimization |= disable_cfg1_optimization

    def add_post_cfg_function(self, fn: PatchFn, disable_cfg1_optimization: bool = False) -> None:
        """Append a function that sees (and may change) the guided prediction."""
        self.sampler_post_cfg_function.append(fn)
        self.disable_cfg1_optimization |= disable_cfg1_optimization

    def set_model_function_wrapper(self, fn: PatchFn) -> None:
        """Wrap every model evaluation (replaces an earlier wrapper)."""
        self.model_function_wrapper = fn

    def attn_patches(self, name: AttnName) -> tuple[list[PatchFn], list[PatchFn]]:
        """The before and after patch lists of one attention kind."""
        return self.patches.get(f"{name}_patch", []), self.patches.get(f"{name}_output_patch", [])

    def find_replace(self, name: AttnName, block: tuple[str, int], index: int) -> PatchFn | None:
        """The replacement for one transformer's attention: exact (block, number, index) first."""
        table = self.replace.get(name)
        if not table:
            return None
        return table.get((block[0], block[1], index)) or table.get(block)


@dataclass(frozen=True)
class ModelPatch:
    """One patch on a MODEL edge; subclasses are frozen dataclasses of the node's settings.

    `apply` registers the patch's functions on a run's `ModelOptions`. It is called once per sampling
    run, so state a patch keeps between its hooks (closures) lives for that run only.
    """

    def apply(self, options: ModelOptions, info: ModelInfo) -> None:
        """Register this patch's functions."""
        raise NotImplementedError


def compile_patches(patches: tuple[ModelPatch, ...], info: ModelInfo) -> ModelOptions:
    """A fresh hook table with every patch applied in order."""
    options = ModelOptions()
    for patch in patches:
        patch.apply(options, info)
    return options
