"""In-loop noise for stochastic samplers: a seeded device generator, or a torchsde Brownian tree."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torchsde

# (sigma, sigma_next) -> standard normal noise shaped like the sampler's x.
NoiseSampler = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def gaussian_noise_sampler(x: torch.Tensor, seed: int | None) -> NoiseSampler:
    """Fresh N(0, 1) draws from a generator on x's device seeded with the sampler seed.

    The generator lives on x's device as in ComfyUI, so ancestral results differ between CPU and GPU.
    """
    generator = torch.Generator(device=x.device)
    if seed is not None:
        generator.manual_seed(seed)

    def sample(sigma: torch.Tensor, sigma_next: torch.Tensor) -> torch.Tensor:
        return torch.randn(x.size(), dtype=x.dtype, layout=x.layout, device=x.device, generator=generator)

    return sample


class BrownianTreeNoiseSampler:
    """Noise from one torchsde BrownianTree over [sigma_min, sigma_max], normalised by sqrt(|dt|).

    Querying the same interval gives the same noise whatever the step count, which is what makes the
    SDE samplers converge. `cpu=True` builds the tree on the CPU (device-independent results, the default
    SDE samplers); `cpu=False` builds it on x's device (the `_gpu` variants).
    """

    def __init__(
        self, x: torch.Tensor, sigma_min: torch.Tensor, sigma_max: torch.Tensor, seed: int | None, cpu: bool
    ):
        self.cpu = cpu
        t0, t1 = torch.as_tensor(sigma_min), torch.as_tensor(sigma_max)
        if seed is None:
            seed = int(torch.randint(0, 2**63 - 1, []).item())
        w0 = torch.zeros_like(x)
        if cpu:
            t0, t1, w0 = t0.cpu(), t1.cpu(), w0.cpu()
        self.tree = torchsde.BrownianTree(t0, w0, t1, entropy=seed)
        self.device, self.dtype = x.device, x.dtype

    def __call__(self, sigma: torch.Tensor, sigma_next: torch.Tensor) -> torch.Tensor:
        """Normalised Brownian increment between two sigmas (sign follows their order)."""
        t0, t1 = torch.as_tensor(sigma), torch.as_tensor(sigma_next)
        lo, hi, sign = (t0, t1, 1) if t0 < t1 else (t1, t0, -1)
        if self.cpu:
            w = self.tree(lo.cpu().float(), hi.cpu().float()).to(self.dtype).to(self.device)
        else:
            w = self.tree(lo, hi)
        return (w * sign) / (t1 - t0).abs().sqrt()


def brownian_noise_sampler(
    x: torch.Tensor, sigmas: torch.Tensor, seed: int | None, cpu: bool
) -> NoiseSampler:
    """The Brownian-tree sampler over the positive range of a schedule."""
    return BrownianTreeNoiseSampler(x, sigmas[sigmas > 0].min(), sigmas.max(), seed, cpu)
