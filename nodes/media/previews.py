"""Live sampler previews: the linear latent-to-RGB projection and optional TAESD decoding of x0.

TAESD weights are never downloaded. A user who wants sharper previews drops the decoder file into
`models/vae_approx/`, named like ComfyUI expects it (the first file whose name starts with the family's
decoder name wins):

- SD1.x: `taesd_decoder.pth` or `taesd_decoder.safetensors`
- SDXL: `taesdxl_decoder.pth` or `taesdxl_decoder.safetensors`

Both the original madebyollin layout (keys `1.weight`, `3.conv.0.weight`, ...) and the diffusers
AutoencoderTiny layout (keys `decoder.layers.0.weight`, ...; encoder keys are ignored) are accepted.

Which previewer a sampler uses: the prompt's `extra_data.preview_method` (sent by newer web clients)
"latent2rgb" forces the projection; "auto"/"default"/absent and "taesd" use TAESD when its decoder is
in vae_approx/, else the projection ("taesd" without the file logs a warning instead of failing the
generation over a preview).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import torch
from PIL import Image as PILImage

from engine import DiffgraphError, ModelPaths, UserFacingError
from nodes.diffusion.checkpoint_io import read_weights
from nodes.types import LatentFormat

log = logging.getLogger(__name__)

PREVIEW_MAX_SIZE = 512
PreviewMethod = Literal["auto", "latent2rgb", "taesd"]
Previewer = Callable[[torch.Tensor], PILImage.Image]


def _to_pil(signed_rgb: torch.Tensor, max_size: int) -> PILImage.Image:
    """[h, w, 3] in -1..1 -> PIL, fit inside max_size (shrink only, bilinear, as ComfyUI's thumbnail)."""
    # Truncating cast (not rounding) matches ComfyUI's preview bytes.
    pixels = ((signed_rgb.float() + 1.0) / 2.0).clamp(0, 1).mul(255).to(torch.uint8).cpu().numpy()
    image = PILImage.fromarray(pixels, mode="RGB")
    if max(image.size) > max_size:
        image.thumbnail((max_size, max_size), PILImage.Resampling.BILINEAR)
    return image


def latent_rgb(x0_model_space: torch.Tensor, latent_format: LatentFormat) -> torch.Tensor:
    """Linear projection of latents [B, C, h, w] to signed RGB [B, h, w, 3] with the format's factors."""
    if not latent_format.rgb_factors:
        raise UserFacingError(f"latent format {latent_format.name!r} has no preview colour factors")
    if x0_model_space.shape[1] != latent_format.channels:
        raise UserFacingError(
            f"preview got {x0_model_space.shape[1]} latent channels but format "
            f"{latent_format.name!r} has {latent_format.channels}"
        )
    factors = torch.tensor(latent_format.rgb_factors, dtype=torch.float32, device=x0_model_space.device)
    bias = None
    if latent_format.rgb_bias is not None:
        bias = torch.tensor(latent_format.rgb_bias, dtype=torch.float32, device=x0_model_space.device)
    channels_last = x0_model_space.float().movedim(1, -1)
    return torch.nn.functional.linear(channels_last, factors.T, bias)


def latent_to_rgb_preview(
    x0_model_space: torch.Tensor, latent_format: LatentFormat, max_size: int = PREVIEW_MAX_SIZE
) -> PILImage.Image:
    """ComfyUI's Latent2RGB preview of the first batch item of x0 (model space), at latent resolution."""
    return _to_pil(latent_rgb(x0_model_space[:1], latent_format)[0], max_size)


def find_taesd_decoder(model_paths: ModelPaths | None, latent_format: LatentFormat) -> Path | None:
    """The TAESD decoder file for this family in `vae_approx/`, or None when the user has none."""
    if model_paths is None or latent_format.taesd_decoder is None:
        return None
    for name in model_paths.list("vae_approx"):
        if Path(name).name.startswith(latent_format.taesd_decoder):
            return model_paths.resolve("vae_approx", name)
    return None


def _diffusers_decoder_keys(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a madebyollin TAESD decoder state dict to diffusers' DecoderTiny keys.

    The original Sequential starts with a parameter-free Clamp, so its index i is diffusers' i - 1.
    """
    renamed = {}
    for key, tensor in state_dict.items():
        if key.startswith("decoder.layers."):
            renamed[key.removeprefix("decoder.")] = tensor
            continue
        if key.startswith(("decoder.", "encoder.")):
            continue
        index, _, rest = key.partition(".")
        if not index.isdigit():
            raise UserFacingError(f"TAESD decoder weights have an unexpected key {key!r}")
        renamed[f"layers.{int(index) - 1}.{rest}"] = tensor
    return renamed


def load_taesd_decoder(path: Path, latent_channels: int) -> torch.nn.Module:
    """Build diffusers' DecoderTiny and load a TAESD decoder file into it (CPU, fp32, eval)."""
    from diffusers.models.autoencoders.vae import DecoderTiny

    # Pickle (.pth) decoders go through the same opt-in as every other pickle file.
    state_dict = read_weights(path)
    decoder = DecoderTiny(
        in_channels=latent_channels,
        out_channels=3,
        num_blocks=(3, 3, 3, 1),
        block_out_channels=(64, 64, 64, 64),
        upsampling_scaling_factor=2,
        act_fn="relu",
        upsample_fn="nearest",
    )
    try:
        decoder.load_state_dict(_diffusers_decoder_keys(state_dict), strict=True)
    except RuntimeError as exc:
        raise UserFacingError(
            f"{path.name} is not a TAESD decoder for {latent_channels} channels: {exc}"
        ) from exc
    return decoder.eval()


def taesd_previewer(decoder: torch.nn.Module, max_size: int = PREVIEW_MAX_SIZE) -> Previewer:
    """A previewer decoding the first item of x0 (model space) with a loaded TAESD decoder."""

    def preview(x0_model_space: torch.Tensor) -> PILImage.Image:
        with torch.no_grad():
            param = next(decoder.parameters())
            if param.device != x0_model_space.device:
                # Decode where the sampler runs: a CPU decode per step would stall a GPU sampler.
                decoder.to(x0_model_space.device)
                param = next(decoder.parameters())
            # DecoderTiny returns -1..1 (diffusers convention), like ComfyUI's TAESD preview path.
            signed = decoder(x0_model_space[:1].to(param.device, param.dtype))[0]
        return _to_pil(signed.movedim(0, -1), max_size)

    return preview


def make_previewer(
    latent_format: LatentFormat,
    model_paths: ModelPaths | None = None,
    method: PreviewMethod = "auto",
    max_size: int = PREVIEW_MAX_SIZE,
) -> Previewer:
    """Pick the preview function for a run: TAESD when asked and present, else the linear projection.

    "auto" uses TAESD if its decoder file is in vae_approx/, else Latent2RGB. "taesd" without the file
    is an error naming the file to add (no silent fallback). Build one per sampler run.
    """
    if method in ("auto", "taesd"):
        path = find_taesd_decoder(model_paths, latent_format)
        if path is not None:
            try:
                return taesd_previewer(load_taesd_decoder(path, latent_format.channels), max_size)
            except DiffgraphError as exc:
                # A preview is not worth failing the generation over: say why and project instead.
                log.warning("TAESD preview decoder unusable, using latent2rgb previews: %s", exc.message)
        elif method == "taesd":
            raise UserFacingError(
                f"TAESD previews asked for but no {latent_format.taesd_decoder}.pth/.safetensors "
                "is in models/vae_approx/; add it or use the latent2rgb preview method"
            )

    def preview(x0_model_space: torch.Tensor) -> PILImage.Image:
        return latent_to_rgb_preview(x0_model_space, latent_format, max_size)

    return preview


def run_previewer(ctx: Any, latent_format: LatentFormat) -> Previewer:
    """The previewer for one sampler run, honouring the prompt's `extra_data.preview_method`.

    Its pictures fit inside the environment's preview size; this is the only place they are resized.
    """
    max_size = ctx.preview_size
    requested = str((ctx.extra_data or {}).get("preview_method") or "auto")
    if requested == "latent2rgb":
        return make_previewer(latent_format, None, "latent2rgb", max_size)
    if requested == "taesd" and find_taesd_decoder(ctx.model_paths, latent_format) is None:
        log.warning(
            "TAESD previews asked for but no %s file is in models/vae_approx/; using latent2rgb",
            latent_format.taesd_decoder,
        )
    return make_previewer(latent_format, ctx.model_paths, "auto", max_size)
