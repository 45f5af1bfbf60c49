"""Classifier-free guidance in x0 space over a UNet forward, every conditioning entry batched as ComfyUI does.

Facts followed (ComfyUI's calc_cond_batch / get_area_and_mult, reimplemented): each entry predicts x0 on
its area's crop of the latent, weighted by `strength` times its mask (or, for an area without a mask, by
linear ramps of min(8, size // 4) latent pixels along every edge not on the latent's border); each side's
result is the weighted sum divided by the summed weights, which start at 1e-37. Entries whose crops and
inputs have the same shapes run in one UNet call, uncond before cond (the order ComfyUI stacks them in).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from nodes.diffusion.flux_kontext import reference_key
from nodes.diffusion.unet_patches import ModelOptions
from nodes.sampling.conds import InpaintSource, SamplingCond, prepare_groups, repeat_to_batch
from nodes.sampling.control import ControlRequest, share_with_uncond
from nodes.sampling.flow import ModelSampling
from nodes.types import CondEntry


class UnetForward(Protocol):
    """(x_in, timesteps, embeds, pooled, extras[, control, transformer_options]) -> raw UNet output (eps or v).

    `control` is passed only when the batched entries carry ControlNets (see nodes.sampling.control);
    `transformer_options` only for a patched model (the call's patch table, sides and sigmas).
    """

    def __call__(
        self,
        x_in: torch.Tensor,
        timesteps: torch.Tensor,
        embeds: torch.Tensor,
        pooled: torch.Tensor | None,
        extras: Sequence[dict[str, Any]] | None,
        /,
        control: ControlRequest | None = None,
        transformer_options: dict[str, Any] | None = None,
    ) -> torch.Tensor: ...


AREA_FUZZ = 8
# Summed weights start here, not at 0, so latent pixels no entry covers divide to 0 instead of NaN.
EMPTY_WEIGHT = 1e-37
# ComfyUI refuses to batch prompts whose token lengths would need more than 4x repeat padding.
MAX_LENGTH_PADDING = 4


def _lcm(a: int, b: int) -> int:
    """Least common multiple of two token lengths."""
    return a * b // math.gcd(a, b)


def pad_embeds_to_common_length(embeds: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Repeat each [B, L, D] along L to the lcm of the lengths (77 and 154 -> 154), as ComfyUI batches them.

    Repeating a prompt's 77-token chunks leaves cross-attention unchanged, so this is exact.
    """
    target = 1
    for e in embeds:
        target = _lcm(target, e.shape[1])
    return [e.repeat(1, target // e.shape[1], 1) for e in embeds]


@dataclass(frozen=True, eq=False)
class _Slot:
    """One entry's share of a model call: its crop of x, weights, model inputs, area and side."""

    input_x: torch.Tensor
    mult: torch.Tensor
    cond: SamplingCond
    side: int


def _ramp_edges(mult: torch.Tensor, area: tuple[int, int, int, int], full: tuple[int, int]) -> None:
    """Fade the weights in place near every area edge that is not on the latent's border."""
    for i in range(2):
        size, offset = area[i], area[2 + i]
        rr = min(AREA_FUZZ, mult.shape[2 + i] // 4)
        if offset != 0:
            for t in range(rr):
                mult.narrow(i + 2, t, 1).mul_((1.0 / rr) * (t + 1))
        if size + offset < full[i]:
            for t in range(rr):
                mult.narrow(i + 2, size - 1 - t, 1).mul_((1.0 / rr) * (t + 1))


def area_and_mult(c: SamplingCond, x: torch.Tensor, sigma: torch.Tensor, side: int) -> _Slot | None:
    """The entry's crop and weights at this sigma, or None outside its timestep range."""
    if bool(sigma[0] > c.sigma_start) or bool(sigma[0] < c.sigma_end):
        return None
    full = (x.shape[2], x.shape[3])
    area = c.area
    input_x = x
    if area is not None:
        h, w = min(full[0] - area[2], area[0]), min(full[1] - area[3], area[1])
        area = (h, w, area[2], area[3])
        input_x = x[:, :, area[2] : area[2] + h, area[3] : area[3] + w]
    if c.mask is not None:
        mask = c.mask[: input_x.shape[0]].to(x.device, x.dtype)
        if area is not None:
            mask = mask[:, area[2] : area[2] + area[0], area[3] : area[3] + area[1]]
        mask = (mask * c.mask_strength).unsqueeze(1)
        mult = mask.repeat(input_x.shape[0] // mask.shape[0], input_x.shape[1], 1, 1) * c.strength
    else:
        mult = torch.ones_like(input_x) * c.strength
        if area is not None:
            _ramp_edges(mult, area, full)
    if area != c.area:
        c = SamplingCond(**{**c.__dict__, "area": area})
    return _Slot(input_x, mult, c, side)


def _can_batch(a: _Slot, b: _Slot) -> bool:
    """Whether two slots can share one UNet call (ComfyUI's can_concat_cond)."""
    if a.input_x.shape != b.input_x.shape or a.cond.control is not b.cond.control:
        return False
    if reference_key(a.cond.extras) != reference_key(b.cond.extras):
        return False
    if (a.cond.pooled is None) != (b.cond.pooled is None) or (a.cond.concat is None) != (
        b.cond.concat is None
    ):
        return False
    if a.cond.pooled is not None and b.cond.pooled is not None and a.cond.pooled.shape != b.cond.pooled.shape:
        return False
    s1, s2 = a.cond.embeds.shape, b.cond.embeds.shape
    if s1 != s2:
        if s1[0] != s2[0] or s1[2] != s2[2]:
            return False
        if _lcm(s1[1], s2[1]) // min(s1[1], s2[1]) > MAX_LENGTH_PADDING:
            return False
    return True


class CfgDenoiser:
    """D(x, sigma) with classifier-free guidance: uncond + (cond - uncond) * cfg on the x0 predictions.

    At cfg == 1 the negative is not evaluated and `uncond_denoised` is zeros, unless `uncond_at_cfg_1`
    (ComfyUI's disable_cfg1_optimization, which its CFG++ samplers set because they step along the uncond
    x0). `inpaint` is given for 9-channel inpainting UNets. Conditioning is resolved against the first
    latent shape seen. `options` is the run's model-patch table (None for an unpatched model): its UNet
    hooks reach the UNet through `transformer_options`, its cfg functions replace the plain formula.
    """

    def __init__(
        self,
        unet: UnetForward,
        model_sampling: ModelSampling,
        positive: Sequence[CondEntry],
        negative: Sequence[CondEntry],
        cfg: float,
        max_batch: int | None = None,
        uncond_at_cfg_1: bool = False,
        inpaint: InpaintSource | None = None,
        options: ModelOptions | None = None,
    ):
        self.unet, self.ms, self.cfg = unet, model_sampling, cfg
        self.options = options
        self.positive = list(positive)
        self.negative = share_with_uncond(self.positive, negative)
        self.max_batch, self.uncond_at_cfg_1, self.inpaint = max_batch, uncond_at_cfg_1, inpaint
        self.uncond_denoised: torch.Tensor | None = None
        self.cond_denoised: torch.Tensor | None = None
        self._resolved: tuple[Hashable, list[list[SamplingCond]]] | None = None

    def resolve(
        self,
        groups: Sequence[Sequence[CondEntry]],
        shape: torch.Size,
        prompt_types: Sequence[str] | None = None,
    ) -> list[list[SamplingCond]]:
        """The groups resolved against a latent shape (remembered while groups and shape stay the same)."""
        key = (tuple(shape), tuple(tuple(id(e) for e in g) for g in groups))
        if self._resolved is None or self._resolved[0] != key:
            self._resolved = (key, prepare_groups(groups, shape, self.ms, self.inpaint, prompt_types))
        return self._resolved[1]

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """x0 prediction with guidance at noisy x and per-item sigma [B]."""
        opts = self.options
        skip_uncond = (
            math.isclose(self.cfg, 1.0)
            and not self.uncond_at_cfg_1
            and not (opts is not None and opts.disable_cfg1_optimization)
        )
        # Both sides are resolved even when the negative is skipped: its areas still mirror (as ComfyUI).
        pos, neg = self.resolve([self.positive, self.negative], x.shape, ("positive", "negative"))
        cond, uncond = self.calc_cond_batch([pos, [] if skip_uncond else neg], x, sigma)
        self.cond_denoised, self.uncond_denoised = cond, uncond
        if opts is not None:
            return self._patched_guidance(opts, x, sigma, pos, None if skip_uncond else neg, cond, uncond)
        if skip_uncond:
            return cond
        return uncond + (cond - uncond) * self.cfg

    def _patched_guidance(
        self,
        opts: ModelOptions,
        x: torch.Tensor,
        sigma: torch.Tensor,
        pos: list[SamplingCond],
        neg: list[SamplingCond] | None,
        cond: torch.Tensor,
        uncond: torch.Tensor,
    ) -> torch.Tensor:
        """Guidance through the patches' cfg functions, with ComfyUI's argument dicts.

        `cond`/`uncond` in the cfg function's args are x minus the predictions (noise-like), in the
        post-cfg args they are the conditionings themselves (None for a skipped negative), which a
        function can evaluate again with `args["model"].calc_cond_batch(...)`.
        """
        common = {"cond_scale": self.cfg, "input": x, "sigma": sigma, "model": self, "model_options": opts}
        for fn in opts.sampler_pre_cfg_function:
            cond, uncond = fn({**common, "conds": [pos, neg], "conds_out": [cond, uncond], "timestep": sigma})
        self.uncond_denoised = uncond
        if opts.sampler_cfg_function is not None:
            args = {
                **common,
                "cond": x - cond,
                "uncond": x - uncond,
                "timestep": sigma,
                "cond_denoised": cond,
                "uncond_denoised": uncond,
                "input_cond": pos,
                "input_uncond": neg,
            }
            result = x - opts.sampler_cfg_function(args)
        else:
            result = uncond + (cond - uncond) * self.cfg
        for fn in opts.sampler_post_cfg_function:
            result = fn(
                {
                    **common,
                    "denoised": result,
                    "cond": pos,
                    "uncond": neg,
                    "cond_denoised": cond,
                    "uncond_denoised": uncond,
                }
            )
        return result

    def denoise_groups(
        self, x: torch.Tensor, sigma: torch.Tensor, groups: list[list[CondEntry]]
    ) -> list[torch.Tensor]:
        """Each group's weighted x0 prediction, all groups batched together (for other guidance rules)."""
        return self.calc_cond_batch(self.resolve(groups, x.shape), x, sigma)

    def calc_cond_batch(
        self,
        sides: list[list[SamplingCond]],
        x: torch.Tensor,
        sigma: torch.Tensor,
        options: ModelOptions | None = None,
        unet: UnetForward | None = None,
    ) -> list[torch.Tensor]:
        """Each side's weighted x0 prediction over every entry active at this sigma.

        `options` overrides the run's patch table for these calls (guidance patches use it to evaluate
        the model once more with an extra attention replacement); `unet` overrides the model (Skip Layer
        Guidance's extra passes).
        """
        options = self.options if options is None else options
        if options is not None:
            for callback in options.evaluation_callbacks:
                callback()
        sums = [torch.zeros_like(x) for _ in sides]
        weights = [torch.ones_like(x) * EMPTY_WEIGHT for _ in sides]
        to_run = [
            slot
            for side, entries in enumerate(sides)
            for c in entries
            if (slot := area_and_mult(c, x, sigma, side)) is not None
        ]
        while to_run:
            fits = [i for i, s in enumerate(to_run) if _can_batch(s, to_run[0])]
            fits.reverse()
            batch = [to_run.pop(i) for i in self._batch_slice(fits, x.shape[0])]
            for slot, pred in zip(batch, self._run(batch, sigma, unet or self.unet, options), strict=True):
                out, wsum = sums[slot.side], weights[slot.side]
                a = slot.cond.area
                if a is not None:
                    out = out[:, :, a[2] : a[2] + a[0], a[3] : a[3] + a[1]]
                    wsum = wsum[:, :, a[2] : a[2] + a[0], a[3] : a[3] + a[1]]
                out += pred * slot.mult
                wsum += slot.mult
        return [s / w for s, w in zip(sums, weights, strict=True)]

    def _batch_slice(self, fits: list[int], batch: int) -> list[int]:
        """As many batchable slots as `max_batch` allows (ComfyUI halves, thirds... until it fits)."""
        if self.max_batch is None:
            return fits
        for i in range(1, len(fits) + 1):
            part = fits[: len(fits) // i]
            if len(part) * batch <= self.max_batch:
                return part
        return fits[:1]

    def _run(
        self, slots: list[_Slot], sigma: torch.Tensor, unet: UnetForward, options: ModelOptions | None
    ) -> list[torch.Tensor]:
        """One UNet call over the slots' crops; returns one x0 prediction per slot."""
        n, batch = len(slots), slots[0].input_x.shape[0]
        x_all = torch.cat([s.input_x for s in slots])
        sigma_all = torch.cat([sigma] * n)
        c: dict[str, Any] = {
            "embeds": torch.cat(
                pad_embeds_to_common_length([repeat_to_batch(s.cond.embeds, batch) for s in slots])
            ),
            "pooled": None,
            "extras": [dict(s.cond.extras) for s in slots for _ in range(batch)],
            "concat": None,
        }
        if slots[0].cond.pooled is not None:
            c["pooled"] = torch.cat([repeat_to_batch(s.cond.pooled, batch) for s in slots])  # type: ignore[arg-type]
        if slots[0].cond.concat is not None:
            concat = [_crop(s.cond.concat, s.cond.area) for s in slots]  # type: ignore[arg-type]
            c["concat"] = torch.cat([repeat_to_batch(t, batch) for t in concat])
        cond_or_uncond = [s.side for s in slots]
        control = slots[0].cond.control
        request = None if control is None else ControlRequest(control, sigma_all, n)

        def apply_model(x_all: torch.Tensor, sigma_all: torch.Tensor, **c: Any) -> torch.Tensor:
            x_in = self.ms.calculate_input(sigma_all, x_all)
            if c["concat"] is not None:
                x_in = torch.cat([x_in, c["concat"].to(x_in)], dim=1)
            timesteps = self.ms.timestep(sigma_all).float()
            extra: dict[str, Any] = {}
            if request is not None:
                extra["control"] = request
            if options is not None:
                extra["transformer_options"] = {
                    "model_options": options,
                    "cond_or_uncond": cond_or_uncond,
                    "sigmas": sigma_all,
                    # Which conditioning each part of the batch is (stable over a run's steps).
                    "uuids": [id(s.cond) for s in slots],
                }

            def call(x: torch.Tensor) -> torch.Tensor:
                return unet(x, timesteps, c["embeds"], c["pooled"], c["extras"], **extra)

            if options is not None:
                for wrapper in reversed(options.diffusion_model_wrappers):
                    call = functools.partial(wrapper, call, options=extra["transformer_options"])
            out = call(x_in)
            return self.ms.calculate_denoised(sigma_all, out.to(x_all.dtype), x_all)

        if options is not None and options.model_function_wrapper is not None:
            args = {"input": x_all, "timestep": sigma_all, "c": c, "cond_or_uncond": cond_or_uncond}
            denoised = options.model_function_wrapper(apply_model, args)
        else:
            denoised = apply_model(x_all, sigma_all, **c)
        return list(denoised.chunk(n))


def _crop(t: torch.Tensor, area: tuple[int, int, int, int] | None) -> torch.Tensor:
    """A [B, C, h, w] tensor cut to an area (or whole)."""
    if area is None:
        return t
    return t[:, :, area[2] : area[2] + area[0], area[3] : area[3] + area[1]]
