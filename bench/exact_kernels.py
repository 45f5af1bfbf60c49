"""Bench: exact-mode (fp32 CPU) sampling with each of its convolution routes, alternating in one process.

    python bench/exact_kernels.py --out bench/results/exact_kernels.json [--ckpt PATH] [--size 256]
                                  [--steps 8] [--rounds 3]

One loaded SD1.5 model (diffgraph's nodes: checkpoint, two prompts), euler/normal, cfg 7, seed 42,
batch 1 (UNet batch 2). Each round runs the whole sampling loop once per variant, in rotating order, so
load drifts hit all alike:
- "onednn": oneDNN's convolutions for every shape (exact mode before conv_gemm);
- "gemm": with nodes/diffusion/conv_gemm.py installed;
- "fold": conv_gemm plus nodes/diffusion/upsample_fold.py (exact mode now).
The JSON has per-run seconds, their medians, ratios to "onednn" and between neighbours, per-step
medians, and the rel L2 of each variant's final latents against "onednn" (the accuracy cost; the same
seed and prompts give the same latents otherwise).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.load_checkpoint import reference_checkpoint  # noqa: E402
from bench.sampling import CFG, load_handles  # noqa: E402
from nodes.diffusion import conv_gemm, upsample_fold  # noqa: E402
from nodes.sampling.cfg import CfgDenoiser  # noqa: E402
from nodes.sampling.model_sampling import DiscreteModelSampling  # noqa: E402
from nodes.sampling.noise import prepare_noise  # noqa: E402
from nodes.sampling.samplers import SampleRequest, sample  # noqa: E402
from nodes.sampling.schedulers import ksampler_sigmas  # noqa: E402

VARIANTS = ("onednn", "gemm", "fold")


def run_once(model, positive, negative, store, size: int, steps: int) -> tuple[float, torch.Tensor]:
    """Seconds and final latents of one euler/normal run through diffgraph's sampler."""
    ms = DiscreteModelSampling.create(model.prediction)
    latents = torch.zeros(1, 4, size // 8, size // 8)

    def unet(x_in, t, embeds, pooled, extras):
        return model.forward(store, x_in, t, embeds, pooled, extras)

    denoiser = CfgDenoiser(unet, ms, positive.entries, negative.entries, CFG)
    sigmas = ksampler_sigmas(ms, "normal", "euler", steps)
    req = SampleRequest(latents, prepare_noise(latents, 42), sigmas, "euler", 42)
    start = time.perf_counter()
    with torch.inference_mode():
        out = sample(denoiser, ms, model.latent_format, req, model.device, None)
    return time.perf_counter() - start, out


def _route(unet_module: torch.nn.Module, variant: str) -> None:
    """Install exactly the convolution routes of `variant` on the loaded UNet."""
    conv_gemm.uninstall(unet_module)
    upsample_fold.uninstall(unet_module)
    if variant in ("gemm", "fold"):
        conv_gemm.install(unet_module)
    if variant == "fold":
        upsample_fold.install(unet_module)


def main(argv: list[str] | None = None) -> None:
    """Rotate the convolution routes for `rounds` rounds; write times, ratio and rel L2 as JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--ckpt", type=Path, default=None)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    ckpt = args.ckpt or reference_checkpoint()
    with tempfile.TemporaryDirectory() as tmp:
        model, positive, negative, store = load_handles(ckpt, "cpu", Path(tmp), "exact")
        unet_module = model.load(store)
        times: dict[str, list[float]] = {v: [] for v in VARIANTS}
        finals: dict[str, torch.Tensor] = {}
        for r in range(args.rounds + 1):  # round 0 warms both routes up and is not timed
            shift = r % len(VARIANTS)
            for variant in VARIANTS[shift:] + VARIANTS[:shift]:
                run_once(model, positive, negative, store, 64, 1)  # prepares the module (installs)
                _route(unet_module, variant)
                seconds, finals[variant] = run_once(model, positive, negative, store, args.size, args.steps)
                if r:
                    times[variant].append(seconds)
                print(f"round {r} {variant}: {seconds:.2f}s", file=sys.stderr, flush=True)
    medians = {v: statistics.median(t) for v, t in times.items()}
    ref = finals["onednn"].double()
    result = {
        "workflow": f"{ckpt.name}, {args.size}x{args.size}, batch 1, cfg {CFG}, euler/normal, {args.steps} steps",
        "run_s_median": medians,
        "step_s_median": {v: m / args.steps for v, m in medians.items()},
        "ratio_gemm_over_onednn": medians["gemm"] / medians["onednn"],
        "ratio_fold_over_gemm": medians["fold"] / medians["gemm"],
        "ratio_fold_over_onednn": medians["fold"] / medians["onednn"],
        "final_latent_rel_l2_vs_onednn": {
            v: float((finals[v].double() - ref).norm() / ref.norm()) for v in VARIANTS[1:]
        },
        "run_s_samples": times,
        "rounds": args.rounds,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "loadavg_end": os.getloadavg(),
        "torch": torch.__version__,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "run_s_samples"}, indent=2))


if __name__ == "__main__":
    main()
