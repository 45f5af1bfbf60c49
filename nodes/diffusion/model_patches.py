"""The model patches behind FreeU, FreeU_V2, PAG, SAG and RescaleCFG, written on the unet_patches hooks.

Algorithms as ComfyUI 0.3.64 runs them (facts followed, reimplemented):
- FreeU (v1/v2): before an output block whose flowing features have 4x or 2x the base channel count,
  the first half of those channels is scaled by b (v2: by 1 + (b - 1) * the per-pixel channel mean
  min-max normalised per item) and the skip features' 2x2 lowest FFT frequencies by s.
- PAG: after guidance, add scale * (cond x0 - cond x0 with the middle block's self-attention output
  replaced by its values).
- SAG: the middle block's first self-attention keeps its attention probabilities on the uncond part
  of the batch; after guidance, the uncond x0 is Gaussian-blurred (9 taps) where the mean attention a
  token receives exceeds 1, re-noised, evaluated again on the uncond, and scale * (blurred - that x0)
  is added. It needs the uncond even at cfg 1.
- RescaleCFG: the guidance is done on v-predictions, and its result is mixed with itself rescaled to
  the std of the cond v-prediction (multiplier).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F

from nodes.diffusion.unet_patches import ModelInfo, ModelOptions, ModelPatch
from nodes.diffusion.unet_view import multihead_attention

# SAG's attention threshold and blur kernel size (fixed in ComfyUI's node).
SAG_THRESHOLD = 1.0
SAG_KERNEL = 9


def fourier_filter(x: torch.Tensor, threshold: int, scale: float) -> torch.Tensor:
    """Scale the centred (2*threshold)^2 lowest spatial frequencies of [B, C, H, W] features."""
    freq = torch.fft.fftshift(torch.fft.fftn(x.float(), dim=(-2, -1)), dim=(-2, -1))
    rows, cols = freq.shape[-2] // 2, freq.shape[-1] // 2
    freq[..., rows - threshold : rows + threshold, cols - threshold : cols + threshold] *= scale
    out = torch.fft.ifftn(torch.fft.ifftshift(freq, dim=(-2, -1)), dim=(-2, -1)).real
    return out.to(x.dtype)


@dataclass(frozen=True)
class FreeUPatch(ModelPatch):
    """FreeU (version 1) or FreeU_V2 (version 2) backbone and skip scaling on the decoder."""

    b1: float
    b2: float
    s1: float
    s2: float
    version: Literal[1, 2] = 2

    def apply(self, options: ModelOptions, info: ModelInfo) -> None:
        """Register the output-block patch."""
        scales = {info.model_channels * 4: (self.b1, self.s1), info.model_channels * 2: (self.b2, self.s2)}

        def before_output_block(h: torch.Tensor, hsp: torch.Tensor, extra: dict[str, Any]):
            scale = scales.get(int(h.shape[1]))
            if scale is None:
                return h, hsp
            half = h.shape[1] // 2
            factor: torch.Tensor | float = scale[0]
            if self.version == 2:
                mean = h.mean(1, keepdim=True)
                flat = mean.view(mean.shape[0], -1)
                lo = flat.min(-1).values.view(-1, 1, 1, 1)
                hi = flat.max(-1).values.view(-1, 1, 1, 1)
                factor = (scale[0] - 1) * ((mean - lo) / (hi - lo)) + 1
            h = torch.cat([h[:, :half] * factor, h[:, half:]], dim=1)
            return h, fourier_filter(hsp, threshold=1, scale=scale[1])

        options.add_patch("output_block_patch", before_output_block)


def _values_only(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, extra: dict[str, Any]) -> torch.Tensor:
    """The perturbed self-attention of PAG: every token attends only to itself."""
    return v


@dataclass(frozen=True)
class PerturbedAttentionPatch(ModelPatch):
    """Perturbed-Attention Guidance on the middle block."""

    scale: float

    def apply(self, options: ModelOptions, info: ModelInfo) -> None:
        """Register the post-cfg function that evaluates the perturbed cond."""

        def after_guidance(args: dict[str, Any]) -> torch.Tensor:
            if self.scale == 0:
                return args["denoised"]
            perturbed = args["model_options"].with_replace("attn1", _values_only, "middle", 0)
            (pag,) = args["model"].calc_cond_batch(
                [args["cond"]], args["input"], args["sigma"], options=perturbed
            )
            return args["denoised"] + (args["cond_denoised"] - pag) * self.scale

        options.add_post_cfg_function(after_guidance)


def attention_with_probs(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain softmax attention over [B, L, heads*d]; also returns the probabilities [B*heads, L, L']."""
    b, _, inner = q.shape
    d = inner // heads

    def split(t: torch.Tensor) -> torch.Tensor:
        return t.reshape(b, -1, heads, d).permute(0, 2, 1, 3).reshape(b * heads, -1, d)

    qh, kh, vh = split(q), split(k), split(v)
    probs = (torch.einsum("bid,bjd->bij", qh, kh) * d**-0.5).softmax(dim=-1)
    out = torch.einsum("bij,bjd->bid", probs.to(vh.dtype), vh)
    return out.reshape(b, heads, -1, d).permute(0, 2, 1, 3).reshape(b, -1, inner), probs


def gaussian_blur(x: torch.Tensor, kernel_size: int, sigma: float) -> torch.Tensor:
    """Separable-kernel Gaussian blur of [B, C, H, W] with reflect padding (sigma 0: unchanged)."""
    if sigma == 0:
        # The Gaussian's limit; ComfyUI divides by zero here and returns NaN.
        return x
    half = (kernel_size - 1) * 0.5
    taps = torch.exp(-0.5 * (torch.linspace(-half, half, steps=kernel_size) / sigma).pow(2))
    taps = (taps / taps.sum()).to(device=x.device, dtype=x.dtype)
    kernel = (taps[:, None] @ taps[None, :]).expand(x.shape[1], 1, kernel_size, kernel_size)
    pad = kernel_size // 2
    return F.conv2d(F.pad(x, [pad] * 4, mode="reflect"), kernel, groups=x.shape[1])


def _token_grid(total: int, height: int, width: int) -> int:
    """Rows of the token grid of an attention map with `total` tokens over a height x width latent."""
    guess = round(math.sqrt(height / width * total))
    for i in range(math.floor(math.sqrt(total) / 2)):
        for rows in (guess + i, max(1, guess - i)):
            if total % rows == 0:
                return rows
    raise ValueError(f"cannot lay {total} attention tokens out on a {height}x{width} latent")


def sag_degraded(x0: torch.Tensor, probs: torch.Tensor, sigma: float) -> torch.Tensor:
    """x0 blurred where the attention map says tokens are much attended to, unchanged elsewhere."""
    b, _, height, width = x0.shape
    attn = probs.reshape(b, -1, probs.shape[1], probs.shape[2])
    attended = attn.mean(1).sum(1) > SAG_THRESHOLD
    rows = _token_grid(attended.shape[-1], height, width)
    mask = attended.reshape(b, rows, -1).unsqueeze(1).to(attn.dtype)
    mask = F.interpolate(mask, (height, width))
    return gaussian_blur(x0, SAG_KERNEL, sigma) * mask + x0 * (1 - mask)


@dataclass(frozen=True)
class SelfAttentionGuidancePatch(ModelPatch):
    """Self-Attention Guidance: attention-map-masked blur of the uncond x0 as a guidance direction."""

    scale: float
    blur_sigma: float

    def apply(self, options: ModelOptions, info: ModelInfo) -> None:
        """Register the recording attention and the post-cfg function (state lives for this run)."""
        recorded: dict[str, torch.Tensor] = {}

        def record(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, extra: dict[str, Any]) -> torch.Tensor:
            heads, sides = extra["n_heads"], extra["cond_or_uncond"]
            if 1 not in sides:
                return multihead_attention(q, k, v, heads)
            out, probs = attention_with_probs(q, k, v, heads)
            per_side = heads * (q.shape[0] // len(sides))
            start = per_side * sides.index(1)
            recorded["uncond"] = probs[start : start + per_side]
            return out

        def after_guidance(args: dict[str, Any]) -> torch.Tensor:
            result = args["denoised"]
            if min(result.shape[2:]) <= 4:  # too small for the blur's padding
                return result
            if "uncond" not in recorded:
                raise ValueError("SelfAttentionGuidance found no uncond attention map for this step")
            x0, x = args["uncond_denoised"], args["input"]
            degraded = sag_degraded(x0, recorded["uncond"], self.blur_sigma)
            sides = [args["uncond"] if args["uncond"] is not None else []]
            (sag,) = args["model"].calc_cond_batch(
                sides, degraded + x - x0, args["sigma"], options=args["model_options"]
            )
            return result + (degraded - sag) * self.scale

        options.set_replace("attn1", record, "middle", 0, 0)
        options.add_post_cfg_function(after_guidance, disable_cfg1_optimization=True)


@dataclass(frozen=True)
class RescaleCfgPatch(ModelPatch):
    """RescaleCFG: guidance on v-predictions, blended with its std-rescaled version."""

    multiplier: float

    def apply(self, options: ModelOptions, info: ModelInfo) -> None:
        """Register the cfg function."""

        def rescaled_cfg(args: dict[str, Any]) -> torch.Tensor:
            x_orig = args["input"]
            sigma = args["sigma"].view(-1, *([1] * (x_orig.ndim - 1)))
            norm = (sigma * sigma + 1.0) ** 0.5
            x = x_orig / (sigma * sigma + 1.0)
            v_cond = (x - (x_orig - args["cond"])) * norm / sigma
            v_uncond = (x - (x_orig - args["uncond"])) * norm / sigma
            v_cfg = v_uncond + args["cond_scale"] * (v_cond - v_uncond)
            ratio = torch.std(v_cond, dim=(1, 2, 3), keepdim=True) / torch.std(
                v_cfg, dim=(1, 2, 3), keepdim=True
            )
            v_final = self.multiplier * (v_cfg * ratio) + (1.0 - self.multiplier) * v_cfg
            return x_orig - (x - v_final * sigma / norm)

        options.set_cfg_function(rescaled_cfg)
