"""MODEL / CLIP / VAE edge values: light handles naming a model in the store plus how to (re)load it.

A handle never holds weights. It carries a `ComponentRecipe` (file, family, component, LoRA patches)
whose `store_key` names the loaded module in the engine's model store; `load(store)` returns the module
on the compute device, loading it on demand when it was evicted.

Contract for samplers (`DiffusionModel.forward`):
  x_in       float [B, 4, h, w] (9 for inpainting UNets: mask and masked-image latent appended), UNet
             space, already multiplied by c_in;
  timesteps  float [B] holding integer values 0..999;
  embeds     float [B, L, D] (L a multiple of 77; D 768 SD1, 1024 SD2, 2048 SDXL, 1280 refiner);
  pooled     float [B, 1280] (SDXL base and refiner only);
  extras     per-batch-item dicts with SDXL size conditioning keys (see SIZE_KEYS); missing keys take
             ComfyUI's defaults (width/height = latent size * 8, crops 0, target = width/height,
             aesthetic_score 6.0, or 2.5 when prompt_type == "negative").
  returns    float32 [B, 4, h, w], the raw UNet output (eps or v, see `prediction`).

A MODEL also carries `patches` (see unet_patches): they are values on the handle, so a patched model
is a new handle and the loaded UNet stays as it is; a sampling run compiles them into a hook table
(`patch_options`) and calls `forward` with that table through a run-private `UnetView`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Literal

import torch
from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL

from engine import EdgeType
from nodes.diffusion.loader import load_component_into
from nodes.diffusion.recipe import ComponentRecipe
from nodes.diffusion.text_encode import ClipStack
from nodes.diffusion.unet_patches import ModelInfo, ModelOptions, ModelPatch, compile_patches
from nodes.diffusion.unet_view import UnetView
from nodes.types import SD15_LATENT, LatentFormat, Prediction

# Keys of CondEntry.extras / forward extras that carry SDXL micro-conditioning.
SIZE_KEYS = ("width", "height", "crop_w", "crop_h", "target_width", "target_height", "aesthetic_score")


@dataclass(frozen=True, eq=False)
class _Handle(EdgeType):
    recipe: ComponentRecipe

    def load(self, store: Any) -> torch.nn.Module:
        """The module on the compute device, loaded through the store when not resident."""
        return load_component_into(store, self.recipe)

    @property
    def family(self) -> str:
        """Model family name (sd15, sd2, sd2-v, sdxl, sdxl-refiner)."""
        return self.recipe.family


@dataclass(frozen=True, eq=False)
class DiffusionModel(_Handle):
    """MODEL: a denoising UNet handle; `forward` runs it (see module docstring for the contract)."""

    io_type: ClassVar[str] = "MODEL"
    prediction: Prediction = "eps"
    latent_format: LatentFormat = SD15_LATENT

    def autoencoder(self, store: Any) -> AutoencoderKL:
        """The AutoencoderKL on the compute device, loaded through the store."""
        module = self.load(store)
        if not isinstance(module, AutoencoderKL):
            raise TypeError(f"VAE recipe {self.recipe.store_key} loaded a {type(module).__name__}")
        return module

    compute_dtype: torch.dtype = torch.float32
    device: str = "cpu"
    # Whether the UNet takes SDXL's pooled text + size embedding ("text_time"), and refiner's layout.
    adm: Literal["none", "sdxl", "refiner"] = "none"
    # 9 for inpainting UNets, which take [mask, masked-image latent] after the 4 latent channels.
    in_channels: int = 4
    # Model patches in the order they were added (ComfyUI's stacking order); part of the handle's value.
    patches: tuple[ModelPatch, ...] = ()

    def with_model_patch(self, patch: ModelPatch) -> DiffusionModel:
        """A new handle with one more patch on top (this one is unchanged)."""
        return replace(self, patches=(*self.patches, patch))

    def patch_options(self, store: Any) -> ModelOptions | None:
        """This run's hook table compiled from `patches`, or None for an unpatched model."""
        if not self.patches:
            return None
        config: Any = self.load(store).config
        return compile_patches(self.patches, ModelInfo(model_channels=int(config.block_out_channels[0])))

    def unet_view(self, store: Any) -> UnetView:
        """A run-private view of the UNet (tensors shared) that calls patch functions at its hook points."""
        return UnetView(self.load(store))

    @property
    def is_inpaint(self) -> bool:
        """Whether the UNet expects the inpainting inputs concatenated to the latent."""
        return self.in_channels == 9

    def forward(
        self,
        store: Any,
        x_in: torch.Tensor,
        timesteps: torch.Tensor,
        embeds: torch.Tensor,
        pooled: torch.Tensor | None = None,
        extras: Sequence[dict[str, Any]] | None = None,
        transformer_options: dict[str, Any] | None = None,
        view: UnetView | None = None,
    ) -> torch.Tensor:
        """Run the UNet once; returns its float32 output (eps or v) with x_in's shape.

        With `transformer_options` (the call's `model_options`, `cond_or_uncond` and `sigmas`) it runs
        through `view`, whose hook points call the options' patch functions.
        """
        unet: Any = self.load(store)
        dev, dt = torch.device(self.device), self.compute_dtype
        kwargs: dict[str, Any] = {}
        if self.adm != "none":
            if pooled is None:
                raise ValueError(f"{self.family} needs pooled text embeddings (SDXL conditioning)")
            time_ids = size_time_ids(self.adm, x_in.shape, extras)
            kwargs["added_cond_kwargs"] = {
                "text_embeds": pooled.to(dev, dt),
                "time_ids": time_ids.to(dev, dt),
            }
        if transformer_options is not None:
            if view is None:
                raise ValueError("patched UNet calls need the run's UnetView")
            kwargs["transformer_options"] = transformer_options
            unet = view
        out = unet(
            x_in.to(dev, dt),
            timesteps.to(dev, torch.float32),
            encoder_hidden_states=embeds.to(dev, dt),
            return_dict=False,
            **kwargs,
        )[0]
        return out.float()


def size_time_ids(adm: str, x_shape: torch.Size, extras: Sequence[dict[str, Any]] | None) -> torch.Tensor:
    """SDXL micro-conditioning rows [B, 6] (base) or [B, 5] (refiner) with ComfyUI's defaults."""
    batch, height_px, width_px = x_shape[0], x_shape[2] * 8, x_shape[3] * 8
    items = list(extras) if extras else [{}] * batch
    if len(items) != batch:
        raise ValueError(f"extras has {len(items)} entries for a batch of {batch}")
    rows = []
    for e in items:
        width = e.get("width", width_px)
        height = e.get("height", height_px)
        crop_w, crop_h = e.get("crop_w", 0), e.get("crop_h", 0)
        if adm == "refiner":
            default_score = 2.5 if e.get("prompt_type") == "negative" else 6.0
            rows.append([height, width, crop_h, crop_w, e.get("aesthetic_score", default_score)])
        else:
            rows.append(
                [height, width, crop_h, crop_w, e.get("target_height", height), e.get("target_width", width)]
            )
    return torch.tensor(rows, dtype=torch.float32)


@dataclass(frozen=True, eq=False)
class ClipHandle(_Handle):
    """CLIP: text encoder(s) handle plus the selected output layer (ComfyUI's clip skip).

    `layer` is None for the family default, or a negative index (-1 = last layer) set by CLIPSetLastLayer.
    """

    io_type: ClassVar[str] = "CLIP"
    layer: int | None = None
    compute_dtype: torch.dtype = torch.float32
    device: str = "cpu"

    def stack(self, store: Any) -> ClipStack:
        """The text encoder(s) with their per-encoder rules, loaded through the store."""
        module = self.load(store)
        if not isinstance(module, ClipStack):
            raise TypeError(f"CLIP recipe {self.recipe.store_key} loaded a {type(module).__name__}")
        return module


@dataclass(frozen=True, eq=False)
class VaeHandle(_Handle):
    """VAE: AutoencoderKL handle; encode/decode helpers live in nodes.diffusion.vae."""

    io_type: ClassVar[str] = "VAE"
    compute_dtype: torch.dtype = torch.float32
    device: str = "cpu"
    latent_format: LatentFormat = SD15_LATENT

    def autoencoder(self, store: Any) -> AutoencoderKL:
        """The AutoencoderKL on the compute device, loaded through the store."""
        module = self.load(store)
        if not isinstance(module, AutoencoderKL):
            raise TypeError(f"VAE recipe {self.recipe.store_key} loaded a {type(module).__name__}")
        return module
