"""Bench: the UNet call of one CFG step in several layouts/precisions, alternating in one process.

    python bench/denoiser_ab.py --out bench/results/denoiser_ab.json [--ckpt PATH] [--size 256]
                                [--rounds 5] [--variants fp32,fp32_cl,bf16_cl] [--threads N]

Variants: fp32 (NCHW, before channels-last), fp32_cl (exact mode today), bf16 / bf16_cl (fast mode),
fp32_gemm (exact mode: 1x1 and deep-level 3x3 convolutions as GEMMs, nodes/diffusion/conv_gemm.py),
fp32_cl_compiled (torch.compile; its first call, the compile, is reported apart). Every variant runs the
same inputs (batch 2: cond + uncond, 77 tokens) once per round, in turn, so machine load drifts hit all of
them alike; the JSON has per-variant medians, their ratio to fp32 and the rel L2 of each output against
fp32 (the accuracy cost). Uses diffgraph's loader on the full-size random SD1.5 unless --ckpt is given.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.load_checkpoint import reference_checkpoint  # noqa: E402
from engine.devices import DevicePolicy  # noqa: E402
from engine.model_store import ModelStore  # noqa: E402
from nodes.diffusion import conv_gemm  # noqa: E402
from nodes.diffusion.loader import load_checkpoint_into, load_component_into  # noqa: E402


def variant_fn(name: str, unet: torch.nn.Module, x: torch.Tensor, t: torch.Tensor, e: torch.Tensor):
    """A zero-argument callable running the UNet as the variant says; returns a float32 output."""
    dtype = torch.bfloat16 if name.startswith("bf16") else torch.float32
    channels_last = "_cl" in name
    shared = dtype == torch.float32 and not channels_last
    module = unet if shared else copy.deepcopy(unet).to(dtype)
    if channels_last:
        module.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    xin = x.to(dtype)
    if channels_last:
        xin = xin.contiguous(memory_format=torch.channels_last)
    ein = e.to(dtype)
    call = torch.compile(module, dynamic=False) if name.endswith("_compiled") else module
    gemm = "_gemm" in name

    def run() -> torch.Tensor:
        # The GEMM-routed convolutions are switched on the shared module for this call only, so the
        # fp32 baseline beside it keeps oneDNN's kernels without a second copy of the weights.
        if gemm:
            conv_gemm.install(module)
        try:
            return call(xin, t, encoder_hidden_states=ein, return_dict=False)[0].float()
        finally:
            if gemm:
                conv_gemm.uninstall(module)

    return run


def main(argv: list[str] | None = None) -> None:
    """Alternate the variants for `rounds` rounds and write medians, ratios and rel L2 as JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--ckpt", type=Path, default=None)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--variants", default="fp32,fp32_cl,bf16_cl")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    names = args.variants.split(",")
    if names[0] != "fp32":
        names.insert(0, "fp32")  # the baseline every ratio and rel L2 refers to
    ckpt = args.ckpt or reference_checkpoint()
    store = ModelStore(DevicePolicy.from_env(device="cpu", precision="exact"))
    _, recipes = load_checkpoint_into(store, ckpt)
    unet = load_component_into(store, recipes["unet"])
    gen = torch.Generator().manual_seed(0)
    side = args.size // 8
    x = torch.randn(2, 4, side, side, generator=gen)
    t = torch.tensor([500.0, 500.0])
    e = torch.randn(2, 77, unet.config.cross_attention_dim, generator=gen)
    times: dict[str, list[float]] = {n: [] for n in names}
    first: dict[str, float] = {}
    outputs: dict[str, torch.Tensor] = {}
    with torch.inference_mode():
        # Non-baseline variants get their own copies first, so the baseline's weights stay NCHW fp32.
        fns = {n: variant_fn(n, unet, x, t, e) for n in reversed(names)}
        for n in names:
            start = time.perf_counter()
            outputs[n] = fns[n]()
            first[n] = time.perf_counter() - start
        for r in range(args.rounds):
            order = names if r % 2 == 0 else list(reversed(names))
            for n in order:
                start = time.perf_counter()
                fns[n]()
                times[n].append(time.perf_counter() - start)
            print(f"round {r}: " + ", ".join(f"{n} {times[n][-1]:.2f}s" for n in names), file=sys.stderr)
    ref = outputs["fp32"].double()
    medians = {n: statistics.median(v) for n, v in times.items()}
    result = {
        "unet_call_s_median": medians,
        "ratio_to_fp32": {n: medians[n] / medians["fp32"] for n in names},
        "rel_l2_vs_fp32": {n: float((outputs[n].double() - ref).norm() / ref.norm()) for n in names},
        "first_call_s": first,
        "samples": times,
        "size": args.size,
        "batch": 2,
        "rounds": args.rounds,
        "threads": torch.get_num_threads(),
        "loadavg_end": os.getloadavg(),
        "torch": torch.__version__,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}, indent=2))


if __name__ == "__main__":
    main()
