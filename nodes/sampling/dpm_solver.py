"""DPM-Solver (Lu et al. 2022, arXiv 2206.00927) in eps form: dpm_fast (fixed steps) and dpm_adaptive."""

from __future__ import annotations

import math

import torch

from nodes.sampling.common import Denoiser, SamplerRun, ancestral_step, sigma_fn, t_fn


class _EpsSolver:
    """DPM-Solver-1/2/3 updates in t = -log(sigma); the eps prediction comes from the denoiser."""

    def __init__(self, model: Denoiser, run: SamplerRun, x: torch.Tensor):
        self.model, self.run, self.steps = model, run, 0
        self.noise = run.noise_for(x)

    def eps(self, cache: dict[str, torch.Tensor], key: str, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Cached eps = (x - D(x, sigma)) / sigma at time t."""
        if key not in cache:
            sigma = sigma_fn(t) * x.new_ones([x.shape[0]])
            cache[key] = (x - self.model(x, sigma)) / sigma_fn(t)
        return cache[key]

    def step_1(self, x, t, t_next, cache):
        """First-order (DDIM) update."""
        h = t_next - t
        return x - sigma_fn(t_next) * h.expm1() * self.eps(cache, "eps", x, t)

    def step_2(self, x, t, t_next, cache, r1=1 / 2):
        """Second-order singlestep update."""
        h = t_next - t
        eps = self.eps(cache, "eps", x, t)
        s1 = t + r1 * h
        u1 = x - sigma_fn(s1) * (r1 * h).expm1() * eps
        eps_r1 = self.eps(cache, "eps_r1", u1, s1)
        return (
            x - sigma_fn(t_next) * h.expm1() * eps - sigma_fn(t_next) / (2 * r1) * h.expm1() * (eps_r1 - eps)
        )

    def step_3(self, x, t, t_next, cache, r1=1 / 3, r2=2 / 3):
        """Third-order singlestep update."""
        h = t_next - t
        eps = self.eps(cache, "eps", x, t)
        s1, s2 = t + r1 * h, t + r2 * h
        u1 = x - sigma_fn(s1) * (r1 * h).expm1() * eps
        eps_r1 = self.eps(cache, "eps_r1", u1, s1)
        u2 = (
            x
            - sigma_fn(s2) * (r2 * h).expm1() * eps
            - sigma_fn(s2) * (r2 / r1) * ((r2 * h).expm1() / (r2 * h) - 1) * (eps_r1 - eps)
        )
        eps_r2 = self.eps(cache, "eps_r2", u2, s2)
        return (
            x
            - sigma_fn(t_next) * h.expm1() * eps
            - sigma_fn(t_next) / r2 * (h.expm1() / h - 1) * (eps_r2 - eps)
        )

    def report(self, i: int, x: torch.Tensor, t: torch.Tensor, cache: dict[str, torch.Tensor]) -> None:
        """Progress callback with the x0 prediction at the start of a step."""
        self.run.step(i, x - sigma_fn(t) * cache["eps"], x)


def _range(sigmas: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(sigma_min, sigma_max) the solver integrates over: last non-zero sigma to the first."""
    if len(sigmas) <= 1:
        return None
    sigma_min = sigmas[-1] if sigmas[-1] != 0 else sigmas[-2]
    return sigma_min, sigmas[0]


def sample_dpm_fast(
    model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, run: SamplerRun, eta: float = 0.0
) -> torch.Tensor:
    """DPM-Solver-fast: len(sigmas) - 1 model evaluations split into order-3/2/1 steps, uniform in t."""
    bounds = _range(sigmas)
    if bounds is None:
        return x
    nfe = len(sigmas) - 1
    solver = _EpsSolver(model, run, x)
    t_start, t_end = t_fn(bounds[1].detach().clone()), t_fn(bounds[0].detach().clone())
    m = math.floor(nfe / 3) + 1
    ts = torch.linspace(t_start, t_end, m + 1, device=x.device)
    orders = [3] * (m - 2) + [2, 1] if nfe % 3 == 0 else [3] * (m - 1) + [nfe % 3]
    for i, order in enumerate(orders):
        cache: dict[str, torch.Tensor] = {}
        t, t_next = ts[i], ts[i + 1]
        t_next_ = t_next
        su: torch.Tensor | float = 0.0
        if eta:
            sd, _ = ancestral_step(sigma_fn(t), sigma_fn(t_next), eta)
            t_next_ = torch.minimum(t_end, t_fn(sd))
            su = (sigma_fn(t_next) ** 2 - sigma_fn(t_next_) ** 2) ** 0.5
        solver.eps(cache, "eps", x, t)
        solver.report(i, x, t, cache)
        step = {1: solver.step_1, 2: solver.step_2, 3: solver.step_3}[order]
        x = step(x, t, t_next_, cache)
        x = x + su * solver.noise(sigma_fn(t), sigma_fn(t_next))
    return x


def sample_dpm_adaptive(
    model: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    run: SamplerRun,
    order: int = 3,
    rtol: float = 0.05,
    atol: float = 0.0078,
    h_init: float = 0.05,
    accept_safety: float = 0.81,
    pcoeff: float = 0.0,
    icoeff: float = 1.0,
    dcoeff: float = 0.0,
) -> torch.Tensor:
    """DPM-Solver-12/23 with a PID step-size controller (deterministic: eta 0, as ComfyUI's default)."""
    bounds = _range(sigmas)
    if bounds is None:
        return x
    solver = _EpsSolver(model, run, x)
    s, t_end = t_fn(bounds[1].detach().clone()), t_fn(bounds[0].detach().clone())
    h = abs(h_init)
    atol_t, rtol_t = torch.tensor(atol), torch.tensor(rtol)
    x_prev, n = x, 0
    errs: list[float] = []
    while s < t_end - 1e-5:
        cache: dict[str, torch.Tensor] = {}
        t = torch.minimum(t_end, s + h)
        denoised = x - sigma_fn(s) * solver.eps(cache, "eps", x, s)
        solver.run.step(n, denoised, x)
        n += 1
        if order == 2:
            x_low = solver.step_1(x, s, t, cache)
            x_high = solver.step_2(x, s, t, cache)
        else:
            x_low = solver.step_2(x, s, t, cache, r1=1 / 3)
            x_high = solver.step_3(x, s, t, cache)
        delta = torch.maximum(atol_t, rtol_t * torch.maximum(x_low.abs(), x_prev.abs()))
        error = torch.linalg.norm((x_low - x_high) / delta) / x.numel() ** 0.5
        # PID control of the step size on the inverse errors of this and the two previous steps; the
        # default gains (integral only) reduce it to factor = (1/err)^(1/order).
        inv_error = 1 / (float(error) + 1e-8)
        if not errs:
            errs = [inv_error, inv_error, inv_error]
        errs[0] = inv_error
        gains = ((pcoeff + icoeff + dcoeff) / order, -(pcoeff + 2 * dcoeff) / order, dcoeff / order)
        raw = errs[0] ** gains[0] * errs[1] ** gains[1] * errs[2] ** gains[2]
        factor = 1 + math.atan(raw - 1)
        accept = factor >= accept_safety
        if accept:
            errs[2], errs[1] = errs[1], errs[0]
        h *= factor
        if accept:
            x_prev, x, s = x_low, x_high, t
    return x
