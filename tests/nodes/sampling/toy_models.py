"""Small deterministic denoisers for sampler tests: an analytic Gaussian one and a tiny conditioned UNet."""

from __future__ import annotations

import torch

from nodes.sampling.cfg import CfgDenoiser
from nodes.sampling.model_sampling import DiscreteModelSampling
from nodes.types import CondEntry


class GaussianDenoiser:
    """Exact D(x, sigma) for data ~ N(mean, std^2) per element, plus a mild nonlinearity (`wobble`).

    With wobble 0 it is the exact denoiser, so the probability-flow ODE has a closed-form solution
    (see `exact_ode_solution`) and SDE samplers should end on N(mean, std^2).
    """

    def __init__(self, mean: torch.Tensor, std: float = 0.5, wobble: float = 0.05):
        self.mean, self.var, self.wobble = mean, std**2, wobble
        self.uncond_denoised = None

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        s2 = sigma.reshape(-1, *[1] * (x.ndim - 1)) ** 2
        base = (self.var * x + s2 * self.mean) / (self.var + s2)
        return base + self.wobble * torch.tanh(x / (1 + s2)) if self.wobble else base

    def exact_ode_solution(self, x: torch.Tensor, sigma_from: float) -> torch.Tensor:
        """Where the probability-flow ODE takes x at sigma_from to at sigma 0 (wobble 0 only)."""
        return self.mean + (x - self.mean) * (self.var / (self.var + sigma_from**2)) ** 0.5


class TinyUnet(torch.nn.Module):
    """A two-conv net with timestep and pooled-text conditioning; returns eps-shaped output."""

    def __init__(self, channels: int = 4, dim: int = 8, seed: int = 0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.conv1 = torch.nn.Conv2d(channels, 16, 3, padding=1)
        self.conv2 = torch.nn.Conv2d(16, channels, 3, padding=1)
        self.text = torch.nn.Linear(dim, 16)
        for p in self.parameters():
            with torch.no_grad():
                p.copy_(torch.randn(p.shape, generator=gen) * 0.2)

    def forward(self, x_in, timesteps, embeds, pooled=None, extras=None):
        """Raw UNet-like output for c_in-scaled x and integer timesteps."""
        t = (timesteps.float() / 1000.0).reshape(-1, 1, 1, 1)
        h = torch.tanh(self.conv1(x_in) + self.text(embeds.mean(1))[:, :, None, None] + t)
        return self.conv2(h)


def cond(dim: int = 8, length: int = 77, seed: int = 1) -> list[CondEntry]:
    """One random conditioning entry [1, length, dim]."""
    gen = torch.Generator().manual_seed(seed)
    return [CondEntry(embeds=torch.randn(1, length, dim, generator=gen))]


def tiny_cfg_denoiser(cfg: float = 5.0, prediction: str = "eps", dtype=torch.float32) -> CfgDenoiser:
    """A CFG denoiser over TinyUnet with random positive/negative prompts."""
    unet = TinyUnet().to(dtype)
    pos = [CondEntry(embeds=e.embeds.to(dtype)) for e in cond(seed=1)]
    neg = [CondEntry(embeds=e.embeds.to(dtype)) for e in cond(seed=2)]
    ms = DiscreteModelSampling.create(prediction)
    return CfgDenoiser(lambda x, t, e, p, ex: unet(x, t, e, p, ex), ms, pos, neg, cfg)
