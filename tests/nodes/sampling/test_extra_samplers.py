"""deis, er_sde, seeds_2/3, sa_solver(_pece) and exp_heun_2_x0(_sde): names, determinism, convergence, parity."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import integrate

from engine.schema import object_info
from nodes.defs.sampler import KSampler, KSamplerAdvanced
from nodes.sampling import deis, sa_solver, schedulers, sde_solvers
from nodes.sampling.common import SamplerRun
from nodes.sampling.model_sampling import DiscreteModelSampling
from nodes.sampling.samplers import SAMPLER_NAMES, SAMPLERS
from nodes.sampling.schedulers import SCHEDULER_NAMES, ksampler_sigmas
from tests.nodes.sampling.kdiffusion_oracle import kdiffusion_sampling
from tests.nodes.sampling.test_kdiffusion_parity import SeededNoise
from tests.nodes.sampling.toy_models import GaussianDenoiser

MS = DiscreteModelSampling.create()

# ComfyUI's KSAMPLER_NAMES followed by its three extra SAMPLER_NAMES, in ComfyUI's order.
COMFYUI_SAMPLER_NAMES = [
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
DETERMINISTIC = ["deis", "exp_heun_2_x0"]
STOCHASTIC = ["exp_heun_2_x0_sde", "er_sde", "seeds_2", "seeds_3", "sa_solver", "sa_solver_pece"]
NEW = DETERMINISTIC + STOCHASTIC


def _gaussian(dtype=torch.float64, wobble: float = 0.05, width: int = 8) -> GaussianDenoiser:
    return GaussianDenoiser(torch.linspace(-1, 1, width).to(dtype).reshape(1, 1, 1, width), wobble=wobble)


def _start(sigmas: torch.Tensor, shape=(2, 4, 8, 8), seed: int = 0) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=sigmas.dtype) * sigmas[0]


def _run(name: str, model, x: torch.Tensor, sigmas: torch.Tensor, seed: int = 5) -> torch.Tensor:
    return SAMPLERS[name](model, x.clone(), sigmas, SamplerRun(seed=seed, model_sampling=MS))


def test_sampler_names_are_comfyuis_list_in_its_order():
    assert list(SAMPLER_NAMES) == COMFYUI_SAMPLER_NAMES
    assert set(SAMPLERS) == set(SAMPLER_NAMES)
    for node in (KSampler, KSamplerAdvanced):
        combo = object_info(node)["input"]["required"]["sampler_name"][0]
        assert combo == COMFYUI_SAMPLER_NAMES


@pytest.mark.parametrize("name", NEW)
def test_new_sampler_runs_on_analytic_denoiser_for_every_scheduler(name):
    model = _gaussian(torch.float32)
    for scheduler in SCHEDULER_NAMES:
        for steps in (1, 4):
            sigmas = ksampler_sigmas(MS, scheduler, name, steps)
            steps_seen: list[int] = []
            run = SamplerRun(
                seed=1, model_sampling=MS, callback=lambda i, x0, x, seen=steps_seen: seen.append(i)
            )
            out = SAMPLERS[name](model, _start(sigmas), sigmas, run)
            assert torch.isfinite(out).all(), (scheduler, steps)
            assert steps_seen == list(range(len(sigmas) - 1)), (scheduler, steps)


@pytest.mark.parametrize("name", NEW)
def test_new_sampler_is_deterministic_for_a_seed(name):
    model, sigmas = _gaussian(), schedulers.schedule(MS, "karras", 6)
    x = _start(sigmas)
    first, again, other = (_run(name, model, x, sigmas, seed) for seed in (5, 5, 6))
    assert torch.equal(first, again)
    assert torch.equal(first, other) == (name in DETERMINISTIC)


def _ode_error(name: str, steps: int) -> float:
    model = _gaussian(wobble=0.0, width=16)
    sigmas = schedulers.schedule(MS, "karras", steps).double()
    x = _start(sigmas, shape=(2, 4, 16, 16), seed=1)
    exact = model.exact_ode_solution(x, float(sigmas[0]))
    return float((_run(name, model, x, sigmas) - exact).abs().max())


@pytest.mark.parametrize("name", DETERMINISTIC)
def test_deterministic_sampler_converges_to_exact_ode_solution(name):
    errors = [_ode_error(name, steps) for steps in (10, 20, 40)]
    assert errors[0] > errors[1] > errors[2], errors
    assert errors[2] < 1e-2
    # Higher order than Euler: several times closer at the same step count.
    assert errors[1] * 4 < _ode_error("euler", 20)


@pytest.mark.parametrize("name", STOCHASTIC)
def test_stochastic_sampler_ends_on_the_data_distribution(name):
    model = _gaussian(wobble=0.0, width=16)
    sigmas = schedulers.schedule(MS, "karras", 20).double()
    x = _start(sigmas, shape=(4, 4, 16, 16), seed=2)
    out = _run(name, model, x, sigmas)
    z = (out - model.mean) / model.var**0.5
    assert abs(float(z.mean())) < 0.05
    assert 0.92 < float(z.std()) < 1.08
    # It really is stochastic: far from where the deterministic flow would end.
    assert float((out - model.exact_ode_solution(x, float(sigmas[0]))).abs().mean()) > 0.1


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max())


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("scheduler", ["karras", "exponential"])
def test_seeds_2_without_noise_matches_kdiffusion_dpmpp_sde_without_noise(scheduler, dtype):
    kd = kdiffusion_sampling()
    model, sigmas = _gaussian(dtype), schedulers.schedule(MS, scheduler, 10).to(dtype)
    x = _start(sigmas)
    ours = sde_solvers.sample_seeds_2(model, x.clone(), sigmas, SamplerRun(seed=1), eta=0.0)
    theirs = kd.sample_dpmpp_sde(
        model, x.clone(), sigmas, disable=True, eta=0.0, noise_sampler=SeededNoise(x)
    )
    assert _max_diff(ours, theirs) <= 1e-5


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_sa_solver_order_2_predictor_matches_kdiffusion_dpmpp_2m_sde_heun(eta, dtype):
    # With constant tau = eta and no corrector, SA-Solver's 2-step predictor is DPM-Solver++(2M) SDE
    # with the exact (heun) second-order term; a final sigma > 0 keeps it from lowering the order.
    kd = kdiffusion_sampling()
    model, sigmas = _gaussian(dtype), schedulers.schedule(MS, "karras", 10)[:-1].to(dtype)
    x = _start(sigmas)
    run = SamplerRun(noise_sampler=SeededNoise(x))
    ours = sa_solver.sample_sa_solver(
        model, x.clone(), sigmas, run, predictor_order=2, corrector_order=0, tau=lambda sigma: eta
    )
    theirs = kd.sample_dpmpp_2m_sde(
        model, x.clone(), sigmas, disable=True, eta=eta, solver_type="heun", noise_sampler=SeededNoise(x)
    )
    assert _max_diff(ours, theirs) <= 1e-5


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_er_sde_first_stage_with_square_scaler_matches_kdiffusion_euler_ancestral(dtype):
    # Scaler lambda^2 makes ER-SDE's first stage exactly an ancestral Euler step (eta 1).
    kd = kdiffusion_sampling()
    model, sigmas = _gaussian(dtype), schedulers.schedule(MS, "karras", 10).to(dtype)
    x = _start(sigmas)
    run = SamplerRun(noise_sampler=SeededNoise(x))
    ours = sde_solvers.sample_er_sde(
        model, x.clone(), sigmas, run, max_stage=1, noise_scaler=lambda lam: lam**2
    )
    theirs = kd.sample_euler_ancestral(model, x.clone(), sigmas, disable=True, noise_sampler=SeededNoise(x))
    assert _max_diff(ours, theirs) <= 1e-5


@pytest.mark.parametrize("tau", [0.0, 1.0])
@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_sa_solver_weights_integrate_polynomials_exactly(order, tau):
    lambdas = torch.tensor([-0.4, 0.1, 0.5, 0.8], dtype=torch.float64)[-order:]
    lam_s, lam_t, sigma_t = 0.8, 1.3, 0.27
    weights = sa_solver.adams_weights(
        torch.tensor(sigma_t, dtype=torch.float64),
        lambdas,
        lambdas[-1],
        torch.tensor(lam_t, dtype=torch.float64),
        tau,
    )
    a = 1 + tau**2
    alpha_t = sigma_t * math.exp(lam_t)
    for degree in range(order):
        # sum_k b_k p(lambda_k) is alpha_t times the exponentially weighted integral of p, for deg p < order.
        exact = integrate.quad(lambda u, p=degree: a * math.exp(a * (u - lam_t)) * u**p, lam_s, lam_t)[0]
        assert float((weights * lambdas**degree).sum()) == pytest.approx(alpha_t * exact, rel=1e-9)


def test_sa_solver_default_noise_only_in_middle_of_schedule():
    tau = sa_solver.tau_interval(MS.percent_to_sigma(0.2), MS.percent_to_sigma(0.8))
    assert tau(torch.tensor(MS.sigma_max)) == 0.0 and tau(torch.tensor(MS.sigma_min)) == 0.0
    assert tau(torch.tensor(1.0)) == 1.0


def test_sa_solver_needs_the_model_sigma_table():
    sigmas = schedulers.schedule(MS, "karras", 4)
    with pytest.raises(ValueError, match="sigma table"):
        sa_solver.sample_sa_solver(_gaussian(torch.float32), _start(sigmas), sigmas, SamplerRun(seed=0))


def test_deis_weights_sum_to_the_sigma_step():
    sigmas = schedulers.schedule(MS, "karras", 12)
    coeffs = deis.deis_coefficients(sigmas, max_order=3)
    assert coeffs[0] == [] and coeffs[-1] == [], "first step and the step to sigma 0 are Euler"
    assert [len(c) for c in coeffs[1:-1]] == [2] + [3] * 9
    for i, weights in enumerate(coeffs[1:-1], start=1):
        # The Lagrange basis sums to one, so the weights integrate dsigma over the step.
        assert float(sum(weights)) == pytest.approx(float(sigmas[i + 1] - sigmas[i]), rel=1e-4)


def test_deis_first_order_is_euler():
    kd = kdiffusion_sampling()
    model, sigmas = _gaussian(), schedulers.schedule(MS, "exponential", 8).double()
    x = _start(sigmas)
    ours = deis.sample_deis(model, x.clone(), sigmas, SamplerRun(), max_order=1)
    assert _max_diff(ours, kd.sample_euler(model, x.clone(), sigmas, disable=True)) <= 1e-12
