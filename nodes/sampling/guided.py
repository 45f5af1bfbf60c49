"""One sampling run from its parts (noise, guider, sampler, sigmas): what every sampler node calls.

KSampler, KSamplerAdvanced, SamplerCustom and SamplerCustomAdvanced differ only in how they build
these parts, so the loop, the inpainting mask, progress, previews and the recorded steps live here once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from engine import RunContext, UserFacingError
from nodes.diffusion.controlnet import Residuals, load_control_model, run_control_model
from nodes.diffusion.controlnet_union import run_union
from nodes.diffusion.model_handle import DiffusionModel
from nodes.diffusion.t2i_adapter import adapter_hint
from nodes.media.preview_worker import PreviewWorker
from nodes.media.previews import run_previewer
from nodes.sampling.cfg import CfgDenoiser
from nodes.sampling.common import Denoiser
from nodes.sampling.conds import InpaintSource
from nodes.sampling.control import ControlRequest, chain_residuals, prepare_hint
from nodes.sampling.flow import ModelSampling, model_sampling_for
from nodes.sampling.guiders import guider_denoiser
from nodes.sampling.noise import prepare_noise
from nodes.sampling.samplers import UNCOND_AT_CFG_1, SampleRequest, prepare_mask, sample
from nodes.sampling.skip_layers import SkipLayerDenoiser
from nodes.types import ControlApplication, Guider, Latent, LatentFormat, LatentSequence, Noise, SamplerSpec


class StepRecorder:
    """The per-step callback: progress, x0 preview, the last x0 and (when wanted) each step's latent."""

    def __init__(self, ctx: RunContext, total: int, latent_format: LatentFormat, keep_steps: bool):
        self.ctx, self.total, self.latent_format = ctx, total, latent_format
        self.keep_steps = keep_steps
        self.steps: list[torch.Tensor] = []
        self.last_x0: torch.Tensor | None = None
        self.previewer: Callable[[torch.Tensor], Any] | None = None
        self.previews: PreviewWorker | None = None

    def __call__(self, i: int, x0: torch.Tensor, x: torch.Tensor) -> None:
        self.last_x0 = x0
        if self.keep_steps and i > 0:
            self.steps.append(self.latent_format.process_out(x.float()).cpu())
        if self.ctx.latents_requested and i > 0:
            # x is the latent entering step i, so the one after step i-1 (the final one comes from sample()).
            self.ctx.step_latent(i - 1, self.total, self.latent_format.process_out(x.float()).cpu())
        if self.ctx.previews_enabled:
            if self.previews is None:
                # Built on the first step only: TAESD weights load once per run, never when unused.
                self.previewer = run_previewer(self.ctx, self.latent_format)
                # Pictures are made and sent off this thread (see preview_worker): a step never waits.
                self.previews = PreviewWorker(self.previewer, self.ctx.preview)
            self.previews.submit(i, x0)
        self.ctx.progress(i + 1, self.total)

    def close(self, failing: bool = False) -> None:
        """Send the last pending preview and stop the worker (a preview failure raises unless `failing`)."""
        if self.previews is not None:
            self.previews.close(raise_errors=not failing)

    def sequence(self, final: torch.Tensor) -> LatentSequence:
        """All recorded step latents plus the final one, [S, B, C, h, w]."""
        return LatentSequence(
            steps=torch.stack([*self.steps, final.float().cpu()]), latent_format=self.latent_format
        )


def initial_noise(noise: Noise, latent: Latent) -> torch.Tensor:
    """The starting noise for a latent: the seed's CPU draw (per batch_index), or zeros."""
    samples = latent.samples
    if not noise.enabled:
        return torch.zeros(samples.shape, dtype=samples.dtype, layout=samples.layout)
    return prepare_noise(samples, noise.seed, latent.batch_index)


def inpaint_source(model: DiffusionModel, latent: Latent) -> InpaintSource:
    """An inpainting UNet's extra inputs come from the starting latent (UNet space) and its noise mask."""
    samples = latent.samples.to(model.device)
    if torch.count_nonzero(samples) > 0:
        samples = model.latent_format.process_in(samples)
    mask = None
    if latent.noise_mask is not None:
        mask = prepare_mask(latent.noise_mask, samples.shape, samples.device)
    return InpaintSource(samples, mask, model.latent_format, kind=model.concat_kind or "inpaint")


def with_skip_layer_guidance(ctx: RunContext, model: DiffusionModel, denoiser: Denoiser) -> SkipLayerDenoiser:
    """The guider's denoiser with the model's Skip Layer Guidance passes after it (CFG guidance only)."""
    if not isinstance(denoiser, CfgDenoiser):
        raise UserFacingError(
            "Skip Layer Guidance works with CFG guidance (KSampler, CFGGuider, BasicGuider)"
        )

    def skipping_unet(layers: tuple[int, ...]):
        def unet(x_in, timesteps, embeds, pooled, extras, control=None, transformer_options=None):
            if control is not None or transformer_options is not None:
                raise UserFacingError(
                    "Skip Layer Guidance cannot be combined with ControlNets or model patches yet"
                )
            return model.forward(ctx.models, x_in, timesteps, embeds, pooled, extras, skip_layers=layers)

        return unet

    return SkipLayerDenoiser(denoiser, model.skip_guidance, skipping_unet)


def control_residuals(
    store: Any,
    model: DiffusionModel,
    ms: ModelSampling,
    request: ControlRequest,
    x_in: torch.Tensor,
    timesteps: torch.Tensor,
    embeds: torch.Tensor,
    pooled: torch.Tensor | None,
    extras: Any,
) -> Residuals | None:
    """The summed residuals of a call's ControlNet chain (the UNet's own latent channels only)."""
    x_ctrl = x_in[:, : model.latent_format.channels]
    added = model.added_cond(pooled, x_ctrl.shape, extras)
    dtype = model.compute_dtype  # the UNet's own: a fast-precision run keeps ControlNets in its dtype

    def run(control: ControlApplication) -> Residuals:
        module: Any = load_control_model(store, control.net, dtype, model)
        if control.net.kind == "t2i_adapter":
            cfg = module.config
            hint = prepare_hint(control.hint, x_ctrl.shape, request.batched, cfg.downscale_factor)
            features = module(adapter_hint(hint, cfg.in_channels).to(x_ctrl.device, dtype))
            return Residuals([], None, list(features))
        hint = prepare_hint(control.hint, x_ctrl.shape, request.batched).to(x_ctrl.device)
        if control.net.layout == "union":
            down, mid = run_union(module, x_ctrl, timesteps, embeds, hint, added, control.net.control_type)
            return Residuals(down, mid)
        return run_control_model(
            module, x_ctrl, timesteps, embeds, hint, added, control.net.global_average_pooling
        )

    return chain_residuals(request, ms, run)


@dataclass
class SamplingResult:
    """A run's new latent, the x0 prediction of its last step, and its steps when they were recorded."""

    latent: Latent
    denoised: Latent
    steps: LatentSequence | None


def sample_guided(
    ctx: RunContext,
    guider: Guider,
    sampler: SamplerSpec,
    sigmas: torch.Tensor,
    noise: Noise,
    latent: Latent,
    keep_steps: bool = False,
) -> SamplingResult:
    """Denoise `latent` along `sigmas` with the guider's model and guidance and the given sampler."""
    model = guider.model
    ms = model_sampling_for(model)
    recorder = StepRecorder(ctx, max(len(sigmas) - 1, 0), model.latent_format, keep_steps)

    # Patched models run through a view built for this run only: the stored UNet is never changed.
    options = model.patch_options(ctx.models, ms)
    # Transformer (flow) models take no UNet hooks, only call wrappers (EasyCache): no view for them.
    view = model.unet_view(ctx.models) if options is not None and model.flow is None else None

    def unet(x_in, timesteps, embeds, pooled, extras, control=None, transformer_options=None):
        residuals = None
        if control is not None:
            residuals = control_residuals(
                ctx.models, model, ms, control, x_in, timesteps, embeds, pooled, extras
            )
        return model.forward(
            ctx.models,
            x_in,
            timesteps,
            embeds,
            pooled,
            extras,
            control=residuals,
            seed=noise.seed,
            transformer_options=transformer_options,
            view=view,
        )

    inpaint = inpaint_source(model, latent) if model.concat_kind else None
    denoiser: Denoiser = guider_denoiser(guider, unet, ms, sampler.name in UNCOND_AT_CFG_1, inpaint, options)
    if model.skip_guidance:
        denoiser = with_skip_layer_guidance(ctx, model, denoiser)
    req = SampleRequest(
        latent.samples,
        initial_noise(noise, latent),
        sigmas,
        sampler.name,
        noise.seed,
        latent.noise_mask,
        sampler.options,
        model.differential,
    )
    try:
        with torch.inference_mode():
            out = sample(denoiser, ms, model.latent_format, req, model.device, recorder).cpu()
    except BaseException:
        recorder.close(failing=True)
        raise
    recorder.close()
    if recorder.total:
        ctx.step_latent(recorder.total - 1, recorder.total, out.float())
    result = Latent(samples=out, batch_index=latent.batch_index, noise_mask=latent.noise_mask)
    denoised = result
    if recorder.last_x0 is not None:
        x0 = model.latent_format.process_out(recorder.last_x0.float()).cpu()
        denoised = Latent(samples=x0, batch_index=latent.batch_index, noise_mask=latent.noise_mask)
    return SamplingResult(result, denoised, recorder.sequence(out) if keep_steps else None)
