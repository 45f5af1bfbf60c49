"""SAMPLER nodes: KSamplerSelect by name, and the parameterised samplers with their loop options."""

from __future__ import annotations

from typing import Any, Literal

import torch

from engine import Input, Node, NodeInputError, NodeInputs, NodeOutputs, Output, RunContext
from nodes.defs.sigma_nodes import precise_float
from nodes.diffusion.model_handle import DiffusionModel
from nodes.sampling.flow import model_sampling_for
from nodes.sampling.sa_solver import tau_interval
from nodes.sampling.samplers import SamplerName
from nodes.types import SamplerSpec

SAMPLERS = "sampling/custom_sampling/samplers"
ETA_TIP = "How much fresh noise each step adds back (0 makes the sampler deterministic)."
S_NOISE_TIP = "A multiplier on that added noise."
DEVICE_TIP = "Where the sampler's noise is drawn: cpu matches every machine; gpu is the device's own draw."


class _SamplerOut(NodeOutputs):
    SAMPLER: SamplerSpec = Output(name="SAMPLER", description="The sampler, ready for a custom sampler node.")


class _SamplerNode(Node):
    category = SAMPLERS
    Outputs = _SamplerOut


def _spec(name: str, **options: Any) -> _SamplerOut:
    return _SamplerOut(SAMPLER=SamplerSpec(name, options))


def _on_device(name: str, noise_device: str) -> str:
    """The `_gpu` variant draws its Brownian-tree noise on the compute device instead of the CPU."""
    return name if noise_device == "cpu" else f"{name}_gpu"


class KSamplerSelect(_SamplerNode):
    """Any of KSampler's samplers by name."""

    class_type = "KSamplerSelect"
    description = "Picks one of KSampler's sampling algorithms by name, with its usual settings."

    class Inputs(NodeInputs):
        sampler_name: SamplerName = Input("euler", description="The sampling algorithm.")

    def run(self, ctx: RunContext, inputs: Inputs) -> _SamplerOut:
        """The named sampler without options."""
        return _spec(inputs.sampler_name)


class SamplerEulerAncestral(_SamplerNode):
    """Euler ancestral with its noise settings."""

    class_type = "SamplerEulerAncestral"
    description = "Euler steps that re-inject noise after each step, with adjustable amounts."

    class Inputs(NodeInputs):
        eta: float = precise_float(1.0, 0.0, 100.0, ETA_TIP)
        s_noise: float = precise_float(1.0, 0.0, 100.0, S_NOISE_TIP)

    def run(self, ctx: RunContext, inputs: Inputs) -> _SamplerOut:
        """euler_ancestral with eta and s_noise."""
        return _spec("euler_ancestral", eta=inputs.eta, s_noise=inputs.s_noise)


class SamplerEulerAncestralCFGPP(_SamplerNode):
    """CFG++ Euler ancestral with its noise settings."""

    class_type = "SamplerEulerAncestralCFGPP"
    display_name = "SamplerEulerAncestralCFG++"
    description = "The CFG++ form of Euler ancestral, which steps along the unguided prediction."

    class Inputs(NodeInputs):
        eta: float = precise_float(1.0, 0.0, 1.0, ETA_TIP)
        s_noise: float = precise_float(1.0, 0.0, 10.0, S_NOISE_TIP)

    def run(self, ctx: RunContext, inputs: Inputs) -> _SamplerOut:
        """euler_ancestral_cfg_pp with eta and s_noise."""
        return _spec("euler_ancestral_cfg_pp", eta=inputs.eta, s_noise=inputs.s_noise)


class SamplerLMS(_SamplerNode):
    """Linear multistep with a chosen order."""

    class_type = "SamplerLMS"
    description = "Linear multistep: combines the last `order` slopes for each step."

    class Inputs(NodeInputs):
        order: int = Input(4, ge=1, le=100, description="How many past steps each update uses.")

    def run(self, ctx: RunContext, inputs: Inputs) -> _SamplerOut:
        """lms with an order."""
        return _spec("lms", order=inputs.order)


class SamplerDPMPP_3M_SDE(_SamplerNode):  # noqa: N801 - ComfyUI's class id
    """DPM-Solver++(3M) SDE with its noise settings."""

    class_type = "SamplerDPMPP_3M_SDE"
    description = "Third-order multistep DPM-Solver++ with stochastic (SDE) noise."

    class Inputs(NodeInputs):
        eta: float = precise_float(1.0, 0.0, 100.0, ETA_TIP)
        s_noise: float = precise_float(1.0, 0.0, 100.0, S_NOISE_TIP)
        noise_device: Literal["gpu", "cpu"] = Input("gpu", description=DEVICE_TIP)

    def run(self, ctx: RunContext, inputs: Inputs) -> _SamplerOut:
        """dpmpp_3m_sde(_gpu) with eta and s_noise."""
        name = _on_device("dpmpp_3m_sde", inputs.noise_device)
        return _spec(name, eta=inputs.eta, s_noise=inputs.s_noise)


class SamplerDPMPP_2M_SDE(_SamplerNode):  # noqa: N801 - ComfyUI's class id
    """DPM-Solver++(2M) SDE with its solver and noise settings."""

    class_type = "SamplerDPMPP_2M_SDE"
    description = "Second-order multistep DPM-Solver++ with stochastic (SDE) noise."

    class Inputs(NodeInputs):
        solver_type: Literal["midpoint", "heun"] = Input(
            "midpoint", description="The second-order correction."
        )
        eta: float = precise_float(1.0, 0.0, 100.0, ETA_TIP)
        s_noise: float = precise_float(1.0, 0.0, 100.0, S_NOISE_TIP)
        noise_device: Literal["gpu", "cpu"] = Input("gpu", description=DEVICE_TIP)

    def run(self, ctx: RunContext, inputs: Inputs) -> _SamplerOut:
        """dpmpp_2m_sde(_gpu) with solver_type, eta and s_noise."""
        name = _on_device("dpmpp_2m_sde", inputs.noise_device)
        return _spec(name, eta=inputs.eta, s_noise=inputs.s_noise, solver_type=inputs.solver_type)


class SamplerDPMPP_SDE(_SamplerNode):  # noqa: N801 - ComfyUI's class id
    """DPM-Solver++ SDE (singlestep) with its noise settings."""

    class_type = "SamplerDPMPP_SDE"
    description = "Singlestep DPM-Solver++ with stochastic noise and an adjustable midpoint ratio."

    class Inputs(NodeInputs):
        eta: float = precise_float(1.0, 0.0, 100.0, ETA_TIP)
        s_noise: float = precise_float(1.0, 0.0, 100.0, S_NOISE_TIP)
        r: float = precise_float(
            0.5, 0.0, 100.0, "Where between two noise levels the intermediate evaluation sits."
        )
        noise_device: Literal["gpu", "cpu"] = Input("gpu", description=DEVICE_TIP)

    def run(self, ctx: RunContext, inputs: Inputs) -> _SamplerOut:
        """dpmpp_sde(_gpu) with eta, s_noise and r."""
        name = _on_device("dpmpp_sde", inputs.noise_device)
        return _spec(name, eta=inputs.eta, s_noise=inputs.s_noise, r=inputs.r)


class SamplerDPMPP_2S_Ancestral(_SamplerNode):  # noqa: N801 - ComfyUI's class id
    """DPM-Solver++(2S) ancestral with its noise settings."""

    class_type = "SamplerDPMPP_2S_Ancestral"
    description = "Second-order singlestep DPM-Solver++ that re-injects noise after each step."

    class Inputs(NodeInputs):
        eta: float = precise_float(1.0, 0.0, 100.0, ETA_TIP)
        s_noise: float = precise_float(1.0, 0.0, 100.0, S_NOISE_TIP)

    def run(self, ctx: RunContext, inputs: Inputs) -> _SamplerOut:
        """dpmpp_2s_ancestral with eta and s_noise."""
        return _spec("dpmpp_2s_ancestral", eta=inputs.eta, s_noise=inputs.s_noise)


class SamplerDPMAdaptative(_SamplerNode):
    """DPM-Solver with an adaptive step size and its controller settings."""

    class_type = "SamplerDPMAdaptative"
    description = "DPM-Solver that picks its own step sizes from an error estimate (ignores the step count)."

    class Inputs(NodeInputs):
        order: int = Input(3, ge=2, le=3, description="Solver order: 2 or 3.")
        rtol: float = precise_float(0.05, 0.0, 100.0, "Relative error tolerance per step.")
        atol: float = precise_float(0.0078, 0.0, 100.0, "Absolute error tolerance per step.")
        h_init: float = precise_float(0.05, 0.0, 100.0, "The first step size, in log-SNR units.")
        pcoeff: float = precise_float(0.0, 0.0, 100.0, "Proportional gain of the step-size controller.")
        icoeff: float = precise_float(1.0, 0.0, 100.0, "Integral gain of the step-size controller.")
        dcoeff: float = precise_float(0.0, 0.0, 100.0, "Derivative gain of the step-size controller.")
        accept_safety: float = precise_float(
            0.81, 0.0, 100.0, "A step is kept when the controller's factor reaches this."
        )
        eta: float = precise_float(0.0, 0.0, 100.0, ETA_TIP + " Only 0 is supported here.")
        s_noise: float = precise_float(1.0, 0.0, 100.0, S_NOISE_TIP)

    @classmethod
    def validate_inputs(cls, values: Any, env: Any) -> str | None:
        """The stochastic form (eta > 0) is not implemented: refuse it rather than run it deterministically."""
        eta = values.get("eta")
        if isinstance(eta, int | float) and eta != 0:
            return "eta above 0 (the stochastic adaptive solver) is not supported yet; set eta to 0"
        return None

    def run(self, ctx: RunContext, inputs: Inputs) -> _SamplerOut:
        """dpm_adaptive with its tolerances and controller gains."""
        if inputs.eta != 0:
            raise NodeInputError("eta", "eta above 0 (the stochastic adaptive solver) is not supported yet")
        keys = ("order", "rtol", "atol", "h_init", "pcoeff", "icoeff", "dcoeff", "accept_safety")
        return _spec("dpm_adaptive", **{k: getattr(inputs, k) for k in keys})


def _reverse_time_scaler(eta: float):
    """Reverse-time SDE noise scale: lambda^(eta + 1)."""

    def scaler(lam: torch.Tensor) -> torch.Tensor:
        return lam ** (eta + 1)

    return scaler


class SamplerER_SDE(_SamplerNode):  # noqa: N801 - ComfyUI's class id
    """ER-SDE with a choice of solver and stage count."""

    class_type = "SamplerER_SDE"
    description = "Extended reverse-time SDE solver (ER-SDE), its SDE or ODE form, with 1 to 3 stages."

    class Inputs(NodeInputs):
        solver_type: Literal["ER-SDE", "Reverse-time SDE", "ODE"] = Input(
            "ER-SDE", description="ER-SDE's own noise scale, the plain reverse-time SDE, or no noise."
        )
        max_stage: int = Input(3, ge=1, le=3, description="The highest solver stage (order) used.")
        eta: float = precise_float(
            1.0, 0.0, 100.0, "The reverse-time SDE's noise strength; not used by ER-SDE."
        )
        s_noise: float = precise_float(1.0, 0.0, 100.0, S_NOISE_TIP)

    def run(self, ctx: RunContext, inputs: Inputs) -> _SamplerOut:
        """er_sde with the chosen noise scale."""
        eta, s_noise = inputs.eta, inputs.s_noise
        if inputs.solver_type == "ODE" or (inputs.solver_type == "Reverse-time SDE" and eta == 0):
            eta, s_noise = 0.0, 0.0
        options: dict[str, Any] = {"s_noise": s_noise, "max_stage": inputs.max_stage}
        if inputs.solver_type != "ER-SDE":
            options["noise_scaler"] = _reverse_time_scaler(eta)
        return _spec("er_sde", **options)


class SamplerSASolver(_SamplerNode):
    """SA-Solver with its noise window and orders."""

    class_type = "SamplerSASolver"
    description = "Stochastic Adams solver: noise only inside a window of the schedule, with set orders."

    class Inputs(NodeInputs):
        model: DiffusionModel = Input(description="The model whose noise table places the noise window.")
        eta: float = precise_float(1.0, 0.0, 10.0, "The noise strength inside the window.")
        sde_start_percent: float = Input(
            0.2, ge=0.0, le=1.0, step=0.001, description="Where the window opens (share of the schedule)."
        )
        sde_end_percent: float = Input(
            0.8, ge=0.0, le=1.0, step=0.001, description="Where the window closes."
        )
        s_noise: float = precise_float(1.0, 0.0, 100.0, S_NOISE_TIP)
        predictor_order: int = Input(3, ge=1, le=6, description="Order of the predictor step.")
        corrector_order: int = Input(4, ge=0, le=6, description="Order of the corrector step (0: none).")
        use_pece: bool = Input(False, description="Evaluate the model again after each correction.")
        simple_order_2: bool = Input(False, description="Use the simplified second-order coefficients.")

    @classmethod
    def validate_inputs(cls, values: Any, env: Any) -> str | None:
        """The simplified order-2 coefficients are not implemented here yet."""
        if values.get("simple_order_2") is True:
            return "simple_order_2 is not supported yet; leave it off"
        return None

    def run(self, ctx: RunContext, inputs: Inputs) -> _SamplerOut:
        """sa_solver with the window turned into a tau function on this model's sigmas."""
        if inputs.simple_order_2:
            raise NodeInputError("simple_order_2", "simple_order_2 is not supported yet; leave it off")
        ms = model_sampling_for(inputs.model)
        tau = tau_interval(
            ms.percent_to_sigma(inputs.sde_start_percent),
            ms.percent_to_sigma(inputs.sde_end_percent),
            inputs.eta,
        )
        return _spec(
            "sa_solver",
            tau=tau,
            s_noise=inputs.s_noise,
            predictor_order=inputs.predictor_order,
            corrector_order=inputs.corrector_order,
            use_pece=inputs.use_pece,
        )


NODES = [
    KSamplerSelect,
    SamplerEulerAncestral,
    SamplerEulerAncestralCFGPP,
    SamplerLMS,
    SamplerDPMPP_3M_SDE,
    SamplerDPMPP_2M_SDE,
    SamplerDPMPP_SDE,
    SamplerDPMPP_2S_Ancestral,
    SamplerDPMAdaptative,
    SamplerER_SDE,
    SamplerSASolver,
]
