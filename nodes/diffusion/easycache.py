"""EasyCache: skip diffusion-model calls whose output change can be predicted from the input change.

Facts followed (ComfyUI 0.3.64's EasyCache node, reimplemented): the cache wraps every diffusion-model
call of a sampling run (the raw model call, after the input scaling, in the model's compute dtype).
Calls at sigmas above `start_percent`'s sigma or at or below `end_percent`'s run normally. Inside the
window, the first conditioning of the first cached call is the one measured: for each call holding
it, the input change is the mean absolute difference of the input against the previous call's, both
taken every 8th latent pixel in height and width; once an output change rate k (output change over
input change, the output change likewise subsampled) and the previous output's mean absolute value
are known, k * input change / that mean is added to a running sum. While the sum stays below
`reuse_threshold` the call is skipped: the output is the input plus the difference (output - input)
cached per conditioning at the last real call; otherwise the sum restarts at 0 and the model runs.
A skip decided by the measured conditioning also skips the other conditionings' calls of the same
guidance evaluation.

ComfyUI's quirks are kept because they change its numbers: a skipped call adds the cached differences
to the model input in place, so where the input is the latent itself (flow models computing in float32)
the x0 prediction is made from the shifted input; when one call holds several conditionings, each
one's cached difference is added to the whole batch; when the output has fewer channels than the input
(inpainting inputs), the last channels of the input are the ones compared and shifted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from nodes.diffusion.unet_patches import ModelInfo, ModelOptions, ModelPatch

log = logging.getLogger(__name__)
SUBSAMPLE = 8
ModelCall = Callable[[torch.Tensor], torch.Tensor]


def _trim_to(x: torch.Tensor, like: torch.Size) -> torch.Tensor:
    """x cut to `like` in every dimension after the batch, keeping the trailing part of each."""
    slices = [slice(None)] + [
        slice(dx - dl, None) if dl != dx else slice(None)
        for dl, dx in zip(like[1:], x.shape[1:], strict=False)
    ]
    return x[tuple(slices)]


class EasyCacheRun:
    """One sampling run's cache state (ComfyUI's EasyCacheHolder after prepare_timesteps)."""

    def __init__(self, patch: EasyCachePatch, start_sigma: float, end_sigma: float, dtype: torch.dtype):
        self.patch, self.start_sigma, self.end_sigma, self.dtype = patch, start_sigma, end_sigma, dtype
        self.skipped = 0
        self.skip_current_step = False
        self._clear()

    def _clear(self) -> None:
        self.rate: torch.Tensor | float | None = None
        self.cumulative: torch.Tensor | float = 0.0
        self.initial_step = True
        self.first: Hashable | None = None
        self.x_prev: torch.Tensor | None = None
        self.out_prev: torch.Tensor | None = None
        self.out_prev_norm: torch.Tensor | None = None
        self.diffs: dict[Hashable, torch.Tensor] = {}
        self.metadata: tuple[Any, ...] | None = None

    def reset(self) -> None:
        """Forget everything; the change rate becomes 0 rather than unknown (as ComfyUI resets it)."""
        self._clear()
        self.rate = 0.0
        self.skipped = 0
        self.skip_current_step = False

    def new_evaluation(self) -> None:
        """A guidance evaluation starts: no skip decided for it yet."""
        self.skip_current_step = False

    def _subsample(self, x: torch.Tensor, uuids: Sequence[Hashable]) -> torch.Tensor:
        part = x.shape[0] // len(uuids)
        index = list(uuids).index(self.first)
        return x[index * part : (index + 1) * part, ..., ::SUBSAMPLE, ::SUBSAMPLE]

    def _check_metadata(self, x: torch.Tensor) -> None:
        metadata = (x.device, x.dtype, tuple(x.shape[1:]))
        if self.metadata is None:
            self.metadata = metadata
        elif metadata != self.metadata:
            log.warning("EasyCache: the latent's shape, dtype or device changed; starting over")
            self.reset()

    def _reuse(self, x: torch.Tensor, uuids: Sequence[Hashable]) -> torch.Tensor:
        """The input plus each conditioning's cached difference (in place, as ComfyUI does)."""
        if self.first in uuids:
            self.skipped += 1
        part = x.shape[0] // len(uuids)
        for i, uuid in enumerate(uuids):
            diff = self.diffs[uuid]
            if x.shape[1:] != diff.shape[1:]:
                x = _trim_to(x, diff.shape)[i * part : (i + 1) * part]
            x += diff.to(x.device)
        return x

    def _remember_diffs(self, output: torch.Tensor, x: torch.Tensor, uuids: Sequence[Hashable]) -> None:
        if output.shape[1:] != x.shape[1:]:
            x = _trim_to(x, output.shape)
        diff = output - x
        part = diff.shape[0] // len(uuids)
        for i, uuid in enumerate(uuids):
            self.diffs[uuid] = diff[i * part : (i + 1) * part]

    def _should_skip(self, x: torch.Tensor, uuids: Sequence[Hashable]) -> tuple[bool, torch.Tensor | None]:
        """(skip this call, input change) for a call holding the measured conditioning."""
        input_change = None
        if self.x_prev is not None:
            input_change = (self._subsample(x, uuids) - self.x_prev).flatten().abs().mean()
        if self.out_prev_norm is None or self.rate is None:
            return False, input_change
        if input_change is None:
            raise ValueError("EasyCache: the latent changed shape during sampling; the cache cannot continue")
        self.cumulative = self.cumulative + (self.rate * input_change) / self.out_prev_norm
        if bool(self.cumulative < self.patch.reuse_threshold):
            if self.patch.verbose:
                log.info("EasyCache: reusing the cache (accumulated change %s)", float(self.cumulative))
            return True, input_change
        if self.patch.verbose:
            log.info("EasyCache: running the model (accumulated change %s)", float(self.cumulative))
        self.cumulative = 0.0
        return False, input_change

    def __call__(self, call: ModelCall, x: torch.Tensor, options: dict[str, Any]) -> torch.Tensor:
        """One diffusion-model call through the cache; `options` holds the call's sigmas and uuids."""
        x = x.to(self.dtype)
        sigmas, uuids = options["sigmas"], options["uuids"]
        if not bool(sigmas[0] > self.end_sigma):
            return call(x)
        measured = self.first in uuids
        input_change = None
        if bool(sigmas[0] <= self.start_sigma):
            self._check_metadata(x)
            if self.skip_current_step:
                return self._reuse(x, uuids)
            if self.initial_step:
                self.first, self.initial_step = uuids[0], False
                measured = True
            if measured:
                skip, input_change = self._should_skip(x, uuids)
                if skip:
                    self.skip_current_step = True
                    return self._reuse(x, uuids)
        output = call(x).to(self.dtype)
        if measured and self.out_prev_norm is not None and self.out_prev is not None:
            output_change = (self._subsample(output, uuids) - self.out_prev).flatten().abs().mean()
            if input_change is not None:
                self.rate = output_change / input_change
        self._remember_diffs(output, x, uuids)
        if measured:
            self.x_prev = self._subsample(x, uuids).clone()
            self.out_prev = self._subsample(output, uuids).clone()
            self.out_prev_norm = output.flatten().abs().mean()
        return output


@dataclass(frozen=True)
class EasyCachePatch(ModelPatch):
    """EasyCache's settings on a MODEL; each sampling run gets its own `EasyCacheRun`."""

    reuse_threshold: float
    start_percent: float
    end_percent: float
    verbose: bool = False

    def apply(self, options: ModelOptions, info: ModelInfo) -> None:
        """Wrap the run's diffusion-model calls and reset the skip flag at each guidance evaluation."""
        if info.percent_to_sigma is None:
            raise ValueError("EasyCache needs the model's sampling schedule")
        run = EasyCacheRun(
            self,
            info.percent_to_sigma(self.start_percent),
            info.percent_to_sigma(self.end_percent),
            info.dtype,
        )
        log.info(
            "EasyCache on: threshold %s, from %s to %s of sampling",
            self.reuse_threshold,
            self.start_percent,
            self.end_percent,
        )
        options.diffusion_model_wrappers.append(run)
        options.evaluation_callbacks.append(run.new_evaluation)
