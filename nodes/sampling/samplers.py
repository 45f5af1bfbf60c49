"""Sampler names (ComfyUI's list, in its order) mapped to implementations, and the `sample()` driver."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal, get_args

import torch

from nodes.sampling import (
    deis,
    dpm_solver,
    dpmpp_family,
    euler_family,
    flow_samplers,
    sa_solver,
    sde_solvers,
    step_samplers,
    uni_pc,
)
from nodes.sampling.common import Denoiser, SamplerRun, StepCallback
from nodes.sampling.flow import ModelSampling, is_flow
from nodes.sampling.noise import seeded_generator
from nodes.types import LatentFormat

SamplerFn = Callable[[Denoiser, torch.Tensor, torch.Tensor, SamplerRun], torch.Tensor]

SamplerName = Literal[
    "euler",
    "euler_cfg_pp",
    "euler_ancestral",
    "euler_ancestral_cfg_pp",
    "heun",
    "heunpp2",
    "exp_heun_2_x0",
    "exp_heun_2_x0_sde",
    "dpm_2",
    "dpm_2_ancestral",
    "lms",
    "dpm_fast",
    "dpm_adaptive",
    "dpmpp_2s_ancestral",
    "dpmpp_2s_ancestral_cfg_pp",
    "dpmpp_sde",
    "dpmpp_sde_gpu",
    "dpmpp_2m",
    "dpmpp_2m_cfg_pp",
    "dpmpp_2m_sde",
    "dpmpp_2m_sde_gpu",
    "dpmpp_2m_sde_heun",
    "dpmpp_2m_sde_heun_gpu",
    "dpmpp_3m_sde",
    "dpmpp_3m_sde_gpu",
    "ddpm",
    "lcm",
    "ipndm",
    "ipndm_v",
    "deis",
    "res_multistep",
    "res_multistep_cfg_pp",
    "res_multistep_ancestral",
    "res_multistep_ancestral_cfg_pp",
    "gradient_estimation",
    "gradient_estimation_cfg_pp",
    "er_sde",
    "seeds_2",
    "seeds_3",
    "sa_solver",
    "sa_solver_pece",
    "ddim",
    "uni_pc",
    "uni_pc_bh2",
]
SAMPLER_NAMES: tuple[str, ...] = get_args(SamplerName)

_e, _d, _s = euler_family, dpmpp_family, sde_solvers
SAMPLERS: dict[str, SamplerFn] = {
    "euler": _e.sample_euler,
    "euler_cfg_pp": _e.sample_euler_cfg_pp,
    "euler_ancestral": _e.sample_euler_ancestral,
    "euler_ancestral_cfg_pp": _e.sample_euler_ancestral_cfg_pp,
    "heun": _e.sample_heun,
    "heunpp2": _e.sample_heunpp2,
    "exp_heun_2_x0": partial(_s.sample_seeds_2, eta=0.0, s_noise=0.0, r=1.0, solver_type="phi_2"),
    "exp_heun_2_x0_sde": partial(_s.sample_seeds_2, r=1.0, solver_type="phi_2"),
    "dpm_2": _e.sample_dpm_2,
    "dpm_2_ancestral": _e.sample_dpm_2_ancestral,
    "lms": _e.sample_lms,
    "dpm_fast": dpm_solver.sample_dpm_fast,
    "dpm_adaptive": dpm_solver.sample_dpm_adaptive,
    "dpmpp_2s_ancestral": _d.sample_dpmpp_2s_ancestral,
    "dpmpp_2s_ancestral_cfg_pp": partial(_d.sample_dpmpp_2s_ancestral, cfg_pp=True),
    "dpmpp_sde": _d.sample_dpmpp_sde,
    "dpmpp_sde_gpu": partial(_d.sample_dpmpp_sde, cpu_tree=False),
    "dpmpp_2m": _d.sample_dpmpp_2m,
    "dpmpp_2m_cfg_pp": _d.sample_dpmpp_2m_cfg_pp,
    "dpmpp_2m_sde": _d.sample_dpmpp_2m_sde,
    "dpmpp_2m_sde_gpu": partial(_d.sample_dpmpp_2m_sde, cpu_tree=False),
    "dpmpp_2m_sde_heun": partial(_d.sample_dpmpp_2m_sde, solver_type="heun"),
    "dpmpp_2m_sde_heun_gpu": partial(_d.sample_dpmpp_2m_sde, solver_type="heun", cpu_tree=False),
    "dpmpp_3m_sde": _d.sample_dpmpp_3m_sde,
    "dpmpp_3m_sde_gpu": partial(_d.sample_dpmpp_3m_sde, cpu_tree=False),
    "ddpm": step_samplers.sample_ddpm,
    "lcm": step_samplers.sample_lcm,
    "ipndm": step_samplers.sample_ipndm,
    "ipndm_v": step_samplers.sample_ipndm_v,
    "deis": deis.sample_deis,
    "res_multistep": _d.sample_res_multistep,
    "res_multistep_cfg_pp": partial(_d.sample_res_multistep, cfg_pp=True),
    "res_multistep_ancestral": partial(_d.sample_res_multistep, eta=1.0),
    "res_multistep_ancestral_cfg_pp": partial(_d.sample_res_multistep, eta=1.0, cfg_pp=True),
    "gradient_estimation": _e.sample_gradient_estimation,
    "gradient_estimation_cfg_pp": partial(_e.sample_gradient_estimation, cfg_pp=True),
    "er_sde": _s.sample_er_sde,
    "seeds_2": _s.sample_seeds_2,
    "seeds_3": _s.sample_seeds_3,
    "sa_solver": sa_solver.sample_sa_solver,
    "sa_solver_pece": partial(sa_solver.sample_sa_solver, use_pece=True),
    # ComfyUI's ddim is euler whose inpainting noise is a second draw from seed + 1.
    "ddim": _e.sample_euler,
    "uni_pc": uni_pc.sample_uni_pc,
    "uni_pc_bh2": partial(uni_pc.sample_uni_pc, variant="bh2"),
}
_f = flow_samplers
# Flow-matching models (ComfyUI's CONST) run these forms instead; every other sampler is shared.
FLOW_SAMPLERS: dict[str, SamplerFn] = {
    "euler_ancestral": _f.sample_euler_ancestral_rf,
    "euler_cfg_pp": _f.sample_euler_cfg_pp_alpha,
    "euler_ancestral_cfg_pp": _f.sample_euler_ancestral_cfg_pp_alpha,
    "dpm_2_ancestral": _f.sample_dpm_2_ancestral_rf,
    "dpmpp_2s_ancestral": _f.sample_dpmpp_2s_ancestral_rf,
    "dpmpp_sde": _f.sample_dpmpp_sde_alpha,
    "dpmpp_sde_gpu": partial(_f.sample_dpmpp_sde_alpha, cpu_tree=False),
    "dpmpp_2m_sde": _f.sample_dpmpp_multistep_sde_alpha,
    "dpmpp_2m_sde_gpu": partial(_f.sample_dpmpp_multistep_sde_alpha, cpu_tree=False),
    "dpmpp_2m_sde_heun": partial(_f.sample_dpmpp_multistep_sde_alpha, solver_type="heun"),
    "dpmpp_2m_sde_heun_gpu": partial(_f.sample_dpmpp_multistep_sde_alpha, solver_type="heun", cpu_tree=False),
    "dpmpp_3m_sde": partial(_f.sample_dpmpp_multistep_sde_alpha, order=3),
    "dpmpp_3m_sde_gpu": partial(_f.sample_dpmpp_multistep_sde_alpha, order=3, cpu_tree=False),
    "lcm": _f.sample_lcm_flow,
}
RANDOM_INPAINT_NOISE = frozenset({"ddim"})
UNI_PC = frozenset({"uni_pc", "uni_pc_bh2"})
UNI_PC_LAST_SIGMA = 0.001
# CFG++ samplers step along CFG's uncond x0, so ComfyUI evaluates the negative even at cfg 1 for them.
UNCOND_AT_CFG_1 = frozenset(name for name in SAMPLER_NAMES if name.endswith("_cfg_pp"))


class _InpaintDenoiser:
    """Keeps the unmasked region on the (re-noised) input latent, ComfyUI's KSamplerX0Inpaint."""

    def __init__(
        self,
        inner: Denoiser,
        ms: ModelSampling,
        latents,
        noise,
        mask,
        sigmas: torch.Tensor | None = None,
        differential: float | None = None,
    ):
        self.inner, self.ms, self.latents, self.noise, self.mask = inner, ms, latents, noise, mask
        self.sigmas, self.differential = sigmas, differential
        self.uncond_denoised: torch.Tensor | None = None

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        mask = self.mask
        if self.differential is not None and self.sigmas is not None:
            mask = differential_mask(mask, sigma, self.sigmas, self.ms, self.differential)
        keep = 1.0 - mask
        renoised = self.ms.noise_scaling(
            sigma.reshape(-1, *[1] * (x.ndim - 1)), self.noise, self.latents, False
        )
        out = self.inner(x * mask + renoised * keep, sigma)
        self.uncond_denoised = self.inner.uncond_denoised
        return out * mask + self.latents * keep


def differential_mask(
    mask: torch.Tensor, sigma: torch.Tensor, sigmas: torch.Tensor, ms: ModelSampling, strength: float
) -> torch.Tensor:
    """Differential Diffusion's mask for this step (ComfyUI's facts, reimplemented).

    A pixel is repainted once the run's progress, measured in model timesteps from the first sigma
    down to max(sigma_min, last sigma), passes its mask value: mask >= threshold gives a 0/1 mask. A
    strength in (0, 1) blends that with the soft mask; 0 counts as 1, as ComfyUI treats it.
    """
    sigma_to = max(ms.sigma_min, float(sigmas[-1]))
    ts_from = ms.timestep(sigmas[:1]).float()
    ts_to = ms.timestep(torch.tensor([sigma_to], device=sigmas.device)).float()
    current = ms.timestep(sigma.reshape(-1)[:1]).float()
    threshold = (current - ts_to) / (ts_from - ts_to)
    binary = (mask >= threshold.to(mask.device)).to(mask.dtype)
    if strength and strength < 1:
        return strength * binary + (1 - strength) * mask
    return binary


def prepare_mask(noise_mask: torch.Tensor, shape: torch.Size, device: torch.device) -> torch.Tensor:
    """A [B or 1, 1, h, w] mask resized (bilinear) to the latent and repeated over channels and batch."""
    mask = noise_mask.reshape(-1, 1, noise_mask.shape[-2], noise_mask.shape[-1]).float()
    mask = torch.nn.functional.interpolate(mask, size=(shape[2], shape[3]), mode="bilinear")
    mask = torch.cat([mask] * shape[1], dim=1)
    reps = -(-shape[0] // mask.shape[0])
    return mask.repeat(reps, 1, 1, 1)[: shape[0]].to(device)


@dataclass
class SampleRequest:
    """One sampling call: latents in VAE space, initial noise, the sigma slice, the sampler and its options."""

    latents: torch.Tensor
    noise: torch.Tensor
    sigmas: torch.Tensor
    sampler: str
    seed: int
    noise_mask: torch.Tensor | None = None
    # Keyword options for the sampler loop (SamplerEulerAncestral's eta, SamplerLMS's order...).
    options: Mapping[str, Any] = field(default_factory=dict)
    # Differential Diffusion's strength: the noise mask becomes a per-step threshold (None: plain mask).
    differential: float | None = None


def sample(
    denoiser: Denoiser,
    ms: ModelSampling,
    latent_format: LatentFormat,
    req: SampleRequest,
    device: torch.device | str = "cpu",
    callback: StepCallback | None = None,
) -> torch.Tensor:
    """Run a sampler as ComfyUI does; returns float32 latents in VAE space (input unchanged if no sigmas).

    A latent with any non-zero element is scaled into model space first; the start is the model
    sampling's noise scaling of it (latents + noise * sigma_0 for eps/v, sigma_0 * noise +
    (1 - sigma_0) * latents for flow models); the scale is undone at the end.
    """
    if req.sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {req.sampler!r}; valid: {', '.join(SAMPLER_NAMES)}")
    if len(req.sigmas) == 0:
        return req.latents
    latents = req.latents.to(device)
    if torch.count_nonzero(latents) > 0:
        latents = latent_format.process_in(latents)
    noise, sigmas = req.noise.to(device), req.sigmas.to(device)
    model = denoiser
    if req.noise_mask is not None:
        mask_noise = noise
        if req.sampler in RANDOM_INPAINT_NOISE:
            mask_noise = torch.randn(noise.shape, generator=seeded_generator(req.seed + 1)).to(noise)
        mask = prepare_mask(req.noise_mask, noise.shape, noise.device)
        model = _InpaintDenoiser(denoiser, ms, latents, mask_noise, mask, sigmas, req.differential)
    x = ms.noise_scaling(sigmas[0], noise, latents, ms.is_max_denoise(float(sigmas[0])))
    run = SamplerRun(seed=req.seed, callback=callback, model_sampling=ms)
    table = FLOW_SAMPLERS if is_flow(ms) and req.sampler in FLOW_SAMPLERS else SAMPLERS
    out = table[req.sampler](model, x, sigmas, run, **req.options)
    last_sigma = sigmas[-1]
    if req.sampler in UNI_PC and float(last_sigma) == 0:
        # ComfyUI's UniPC overwrites the schedule's final 0 with 0.001 in place, so the caller's inverse
        # scaling sees 0.001 (a 0.1 % gain on flow models, nothing on eps/v ones): kept for equal numbers.
        last_sigma = torch.tensor(UNI_PC_LAST_SIGMA)
    out = ms.inverse_noise_scaling(last_sigma, out)
    return latent_format.process_out(out.to(torch.float32))
