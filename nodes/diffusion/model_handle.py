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
  extras     per-batch-item dicts with SDXL size conditioning keys (see SIZE_KEYS) and, for unCLIP
             models, "unclip": the UnclipImage applications of that item; "gligen": (GLIGEN file,
             GligenBox tuple) for text boxes (those rows run a gated copy of the UNet); missing size keys take
             ComfyUI's defaults (width/height = latent size * 8, crops 0, target = width/height,
             aesthetic_score 6.0, or 2.5 when prompt_type == "negative").
  returns    float32 [B, 4, h, w], the raw UNet output (eps or v, see `prediction`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL

from engine import EdgeType
from nodes.diffusion.checkpoint_io import read_weights
from nodes.diffusion.gligen import box_inputs, gated_unet
from nodes.diffusion.loader import load_component_into
from nodes.diffusion.recipe import ComponentRecipe
from nodes.diffusion.text_encode import ClipStack
from nodes.diffusion.unclip import batch_adm
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
    # Whether the UNet takes SDXL's pooled text + size embedding ("text_time"), refiner's layout, or
    # unCLIP's noise-augmented image embedding (extras["unclip"], see nodes.diffusion.unclip).
    adm: Literal["none", "sdxl", "refiner", "unclip"] = "none"
    # 9 for inpainting UNets, which take [mask, masked-image latent] after the 4 latent channels.
    in_channels: int = 4

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
        seed: int = 0,
    ) -> torch.Tensor:
        """Run the UNet once; returns its float32 output (eps or v) with x_in's shape.

        `seed` is the sampling seed; unCLIP models draw their image-embedding noise from it.
        """
        unet = self.load(store)
        dev, dt = torch.device(self.device), self.compute_dtype
        kwargs: dict[str, Any] = {}
        if self.adm == "unclip":
            items = list(extras) if extras else [{}] * x_in.shape[0]
            config: Any = unet.config
            dim = int(config.projection_class_embeddings_input_dim) // 2
            adm = batch_adm((e.get("unclip", ()) for e in items), seed, dim)
            kwargs["class_labels"] = adm.to(dev, dt)
        elif self.adm != "none":
            if extras and any(e.get("unclip") for e in extras):
                raise ValueError("unCLIP image conditioning on SDXL (revision) is not supported")
            if pooled is None:
                raise ValueError(f"{self.family} needs pooled text embeddings (SDXL conditioning)")
            time_ids = size_time_ids(self.adm, x_in.shape, extras)
            kwargs["added_cond_kwargs"] = {
                "text_embeds": pooled.to(dev, dt),
                "time_ids": time_ids.to(dev, dt),
            }
        args = (x_in.to(dev, dt), timesteps.to(dev, torch.float32), embeds.to(dev, dt))
        groups = gligen_groups(extras, x_in.shape[0])
        if groups is None:
            return _call(unet, args, kwargs).float()
        out = torch.empty(x_in.shape, dtype=torch.float32, device=dev)
        for rows, boxes in groups:
            sub_args, sub_kwargs = _take(args, rows), _take(kwargs, rows)
            model = unet
            if boxes is not None:
                path, items = boxes
                model = store.get((*self.recipe.store_key, "gligen", path), lambda p=path: _gated(unet, p))
                h, w = x_in.shape[2], x_in.shape[3]
                gligen = {k: v.to(dev, dt) for k, v in box_inputs(items, h, w, len(rows)).items()}
                sub_kwargs["cross_attention_kwargs"] = {"gligen": gligen}
            out[rows] = _call(model, sub_args, sub_kwargs).float()
        return out


def _call(unet: Any, args: tuple[torch.Tensor, ...], kwargs: dict[str, Any]) -> torch.Tensor:
    """One UNet call: (x, timesteps, text embeddings) plus the family's extra inputs."""
    x, timesteps, embeds = args
    return unet(x, timesteps, encoder_hidden_states=embeds, return_dict=False, **kwargs)[0]


def _take(value: Any, rows: list[int]) -> Any:
    """The given batch rows of every tensor in a (nested) tuple/dict of tensors."""
    if isinstance(value, torch.Tensor):
        return value[rows]
    if isinstance(value, dict):
        return {k: _take(v, rows) for k, v in value.items()}
    return tuple(_take(v, rows) for v in value)


def _gated(unet: torch.nn.Module, path: str) -> torch.nn.Module:
    """The base UNet copied with a GLIGEN file's gated layers (see nodes.diffusion.gligen)."""
    return gated_unet(unet, read_weights(Path(path)), Path(path).name)


def gligen_groups(extras: Sequence[dict[str, Any]] | None, batch: int) -> list[tuple[list[int], Any]] | None:
    """Batch rows grouped by their GLIGEN boxes (None when no row has any); rows without boxes share a group."""
    if not extras or not any(e.get("gligen") for e in extras):
        return None
    groups: dict[Any, tuple[list[int], Any]] = {}
    for i, e in enumerate(extras):
        boxes = e.get("gligen")
        key = None if not boxes else (boxes[0], tuple(id(b) for b in boxes[1]))
        groups.setdefault(key, ([], boxes or None))[0].append(i)
    if sum(len(rows) for rows, _ in groups.values()) != batch:
        raise ValueError(f"extras has {len(extras)} entries for a batch of {batch}")
    return list(groups.values())


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
