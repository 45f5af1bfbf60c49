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

FLUX models (`flow` set) take x [B, 16, h, w] unscaled, timesteps = sigmas in [0, 1], embeds the T5
tokens [B, L, 4096], pooled the CLIP-L pooled output [B, 768] and `extras[i]["guidance"]` (FLUX dev's
distilled guidance, 3.5 when absent) and `extras[i]["reference_latents"]` (Kontext reference latents,
raw VAE space); they return the velocity [B, 16, h, w]. FLUX Fill takes x [B, 96, h, w]: the latent,
the masked-image latent and the mask packed 8x8 into 64 channels (nodes.sampling.conds); FLUX
Canny/Depth x [B, 32, h, w]: the latent and the control image's latent.
SD3-family MMDiTs take the same call with 16-channel x_in, timesteps = sigma * 1000, embeds [B, L, 4096]
(CLIP-L/G padded to 4096 then T5 tokens) and pooled [B, 2048], and return the velocity.

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
from nodes.diffusion import sd3
from nodes.diffusion.controlnet import Residuals
from nodes.diffusion.denoiser_runtime import input_layout, prepared_denoiser
from nodes.diffusion.flux import FluxModel, guidance_vector
from nodes.diffusion.flux_kontext import reference_batch
from nodes.diffusion.gligen import gligen_groups, run_groups
from nodes.diffusion.loader import load_component_into, release_component
from nodes.diffusion.recipe import ComponentRecipe
from nodes.diffusion.text_encode import ClipStack
from nodes.diffusion.unclip import batch_adm
from nodes.diffusion.unet_patches import ModelInfo, ModelOptions, ModelPatch, compile_patches
from nodes.diffusion.unet_view import UnetView
from nodes.diffusion.uso import StyleTokens
from nodes.types import SD15_LATENT, ConcatKind, FlowSampling, LatentFormat, Prediction, SkipLayerGuidance

# (latent channels, input channels) -> the extra input a model reads after its latent: SD inpainting
# UNets' mask and masked image, instruct-pix2pix UNets' image latent, FLUX Fill's masked image and packed
# mask, FLUX Canny/Depth's control-image latent (also FLUX dev widened by a BFL control LoRA).
CONCAT_KINDS: dict[tuple[int, int], ConcatKind] = {
    (4, 9): "inpaint",
    (4, 8): "ip2p",
    (16, 96): "fill",
    (16, 32): "flux_image",
}
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
    # Zero-terminal-SNR sigma table (ModelSamplingDiscrete's zsnr switch).
    zsnr: bool = False
    # Skip Layer Guidance passes applied after CFG, in order (SkipLayerGuidanceSD3).
    skip_guidance: tuple[SkipLayerGuidance, ...] = ()
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
    # 9 for inpainting UNets, which take [mask, masked-image latent] after the 4 latent channels, 8 for
    # instruct-pix2pix UNets; 96 for FLUX Fill ([masked-image latent, packed mask] after the 16), 32 for
    # FLUX Canny/Depth (the control-image latent). See CONCAT_KINDS.
    in_channels: int = 4
    # Flow-matching schedule (FLUX, SD3); None for the discrete eps/v models.
    flow: FlowSampling | None = None
    # Differential Diffusion's strength: the noise mask becomes a per-step threshold (None: off).
    differential: float | None = None
    # Model patches in the order they were added (ComfyUI's stacking order); part of the handle's value.
    patches: tuple[ModelPatch, ...] = ()
    # FLUX only: USO style references in the order they were added (each goes before the earlier ones).
    style_tokens: tuple[StyleTokens, ...] = ()

    def with_model_patch(self, patch: ModelPatch) -> DiffusionModel:
        """A new handle with one more patch on top (this one is unchanged)."""
        return replace(self, patches=(*self.patches, patch))

    def patch_options(self, store: Any, ms: Any = None) -> ModelOptions | None:
        """This run's hook table compiled from `patches` (`ms`: the run's model sampling), or None."""
        if not self.patches:
            return None
        unet = self.load(store)
        channels = getattr(getattr(unet, "config", None), "block_out_channels", None)
        info = ModelInfo(
            model_channels=int(channels[0]) if channels else 0,
            percent_to_sigma=None if ms is None else ms.percent_to_sigma,
            dtype=unet.compute if isinstance(unet, FluxModel) else self.compute_dtype,
        )
        return compile_patches(self.patches, info)

    def unet_view(self, store: Any) -> UnetView:
        """A run-private view of the UNet (tensors shared) that calls patch functions at its hook points."""
        return UnetView(self.load(store))

    @property
    def concat_kind(self) -> ConcatKind | None:
        """What the model reads after the latent's channels (see nodes.sampling.conds), None for nothing."""
        return CONCAT_KINDS.get((self.latent_format.channels, self.in_channels))

    def forward(
        self,
        store: Any,
        x_in: torch.Tensor,
        timesteps: torch.Tensor,
        embeds: torch.Tensor,
        pooled: torch.Tensor | None = None,
        extras: Sequence[dict[str, Any]] | None = None,
        skip_layers: tuple[int, ...] = (),
        control: Residuals | None = None,
        seed: int = 0,
        transformer_options: dict[str, Any] | None = None,
        view: UnetView | None = None,
    ) -> torch.Tensor:
        """Run the UNet once; returns its float32 output (eps or v) with x_in's shape.

        `seed` is the sampling seed; unCLIP models draw their image-embedding noise from it.

        `skip_layers` (transformer families only) names blocks to pass over (Skip Layer Guidance).
        `control` holds ControlNet residuals added to the encoder's skip connections and the middle block.
        With `transformer_options` (the call's `model_options`, `cond_or_uncond` and `sigmas`) a UNet runs
        through `view`, whose hook points call the options' patch functions.
        """
        unet = self.load(store)
        if transformer_options is not None and not transformer_options["model_options"].has_unet_hooks:
            transformer_options = None  # patches that only wrap whole calls (EasyCache) need no UNet view
        if transformer_options is not None and (isinstance(unet, FluxModel) or self.family == sd3.FAMILY):
            raise ValueError(
                f"model patches (FreeU, PAG, SAG...) for {self.family} models are not supported yet"
            )
        if control is not None and (isinstance(unet, FluxModel) or self.family == sd3.FAMILY):
            raise ValueError(f"ControlNets for {self.family} models are not supported yet")
        if isinstance(unet, FluxModel):
            if skip_layers:
                raise ValueError("skipping layers is not supported for FLUX models")
            guidance = guidance_vector(extras, x_in.shape[0])
            refs, method = reference_batch(extras, x_in.shape[0])
            refs = [self.latent_format.process_in(r.float()) for r in refs]
            prefix = None
            for style in self.style_tokens:
                tokens = style.tokens(store, unet.compute, x_in.shape[0])
                prefix = tokens if prefix is None else torch.cat([tokens, prefix], dim=1)
            return unet(x_in, timesteps, embeds, pooled, guidance, refs, method, prefix)
        if self.family == sd3.FAMILY:
            dev = torch.device(self.device)
            return sd3.mmdit_forward(
                unet, x_in, timesteps, embeds, pooled, dev, self.compute_dtype, skip_layers
            )
        if skip_layers:
            raise ValueError(f"skipping layers needs a transformer model; {self.family} is a UNet")
        dev, dt = torch.device(self.device), self.compute_dtype
        kwargs: dict[str, Any] = {}
        added = self.added_cond(pooled, x_in.shape, extras)
        if added is not None:
            kwargs["added_cond_kwargs"] = added
        if self.adm == "unclip":
            config: Any = unet.config
            dim = int(config.projection_class_embeddings_input_dim) // 2
            items = list(extras) if extras else [{}] * x_in.shape[0]
            kwargs["class_labels"] = batch_adm((e.get("unclip", ()) for e in items), seed, dim).to(dev, dt)
        elif extras and any(e.get("unclip") for e in extras) and self.adm != "none":
            raise ValueError("unCLIP image conditioning on SDXL (revision) is not supported")
        if control is not None:
            kwargs.update(control_kwargs(control, unet, x_in, dev, dt))
        args = (input_layout(x_in.to(dev, dt)), timesteps.to(dev, torch.float32), embeds.to(dev, dt))
        groups = gligen_groups(extras, x_in.shape[0])
        if transformer_options is not None:
            if view is None:
                raise ValueError("patched UNet calls need the run's UnetView")
            if groups is not None:
                raise ValueError("GLIGEN boxes on a patched model (FreeU, PAG, SAG...) are not supported yet")
            return _call(view, args, {**kwargs, "transformer_options": transformer_options}).float()
        if groups is None:
            # The prepared runner (channels-last, optionally compiled); GLIGEN hooks the module itself.
            return _call(prepared_denoiser(unet), args, kwargs).float()
        return run_groups(store, self.recipe.store_key, unet, _call, groups, args, kwargs)

    def added_cond(
        self, pooled: torch.Tensor | None, x_shape: torch.Size, extras: Sequence[dict[str, Any]] | None
    ) -> dict[str, torch.Tensor] | None:
        """SDXL's pooled text and size ids for the UNet (and its ControlNets); None for other families."""
        if self.adm in ("none", "unclip"):
            return None
        if pooled is None:
            raise ValueError(f"{self.family} needs pooled text embeddings (SDXL conditioning)")
        dev, dt = torch.device(self.device), self.compute_dtype
        time_ids = size_time_ids(self.adm, x_shape, extras)
        return {"text_embeds": pooled.to(dev, dt), "time_ids": time_ids.to(dev, dt)}


def _call(unet: Any, args: tuple[torch.Tensor, ...], kwargs: dict[str, Any]) -> torch.Tensor:
    """One UNet call: (x, timesteps, text embeddings) plus the family's extra inputs."""
    x, timesteps, embeds = args
    return unet(x, timesteps, encoder_hidden_states=embeds, return_dict=False, **kwargs)[0]


def control_kwargs(
    control: Residuals, unet: torch.nn.Module, x_in: torch.Tensor, dev: torch.device, dt: torch.dtype
) -> dict[str, Any]:
    """diffusers' residual arguments; a skip no control reached gets zeros of the UNet's shape there."""
    out: dict[str, Any] = {}
    if control.down or control.mid is not None:
        down = [None if t is None else t.to(dev, dt) for t in control.down]
        shapes = skip_shapes(unet, x_in.shape)
        down += [None] * (len(shapes) - len(down))
        out["down_block_additional_residuals"] = tuple(
            torch.zeros(s, device=dev, dtype=dt) if t is None else t
            for t, s in zip(down, shapes, strict=True)
        )
        if control.mid is not None:
            out["mid_block_additional_residual"] = control.mid.to(dev, dt)
    if control.adapter:
        # diffusers pops from this list while it runs, so it gets its own copy.
        out["down_intrablock_additional_residuals"] = [
            t.to(dev, dt) for t in control.adapter if t is not None
        ]
    return out


def skip_shapes(unet: torch.nn.Module, x_shape: torch.Size) -> list[tuple[int, ...]]:
    """Shapes of a diffusers UNet's encoder skip connections for a latent of `x_shape`."""
    batch, _, h, w = x_shape
    cfg: Any = unet.config
    chans = list(cfg.block_out_channels)
    shapes: list[tuple[int, ...]] = [(batch, chans[0], h, w)]
    for level, ch in enumerate(chans):
        shapes += [(batch, ch, h, w)] * cfg.layers_per_block
        if level < len(chans) - 1:
            h, w = (h + 1) // 2, (w + 1) // 2
            shapes.append((batch, ch, h, w))
    return shapes


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

    def release(self, store: Any) -> None:
        """This prompt's encoding is done: standalone encoder files become the first to drop from the store."""
        release_component(store, self.recipe)

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
