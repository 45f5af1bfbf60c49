"""Bench: per-step sampling time, diffgraph's KSampler path vs diffusers' StableDiffusionPipeline (Euler).

    python bench/sampling.py --out bench/results/sampling.json [--ckpt PATH] [--device cpu|cuda]
                             [--size 256] [--steps 4] [--rounds 2] [--precision exact|fast] [--compile]

    python bench/sampling.py --vs-diffusers --device cuda --ckpt SD15.safetensors --sdxl-ckpt SDXL.safetensors
                             --out bench/results/gpu_vs_diffusers.json [--steps 20] [--precision fast] [--compile]

    python bench/sampling.py --vs-comfyui http://127.0.0.1:8188 --models-dir DIR --ckpt-name FILE
                             --out bench/results/vs_comfyui.json [--steps 8] [--rounds 3] [--precision fast]

The second form compares whole server runs against a ComfyUI server the person running the benchmark
started (see bench/vs_comfyui.py); DIR/checkpoints/FILE must be the file ComfyUI loads too.

Both sides use the same UNet module (loaded once by diffgraph's loader from the same checkpoint), the same
prompt embeddings, cfg 7, batch 1, fp32 on CPU (fp16 on CUDA), and run alternately. Timed: the sampling
loop only (text encoding and VAE decode excluded; diffusers returns latents).

Both sides call the same UNet module; forward hooks on it time every UNet call, so each side's time
outside the UNet (its own sampler, CFG and scheduler work) is reported per step as well. That split is
far less sensitive to machine load than the whole-step ratio.

Preview cost: `preview_overhead_pct` is the Latent2RGB preview of one step's x0, timed on its own (median
of many calls), as a share of diffgraph's step time. `preview_overhead_pct_in_loop` compares whole runs
with and without previews; on a busy CPU its noise (several %) is far larger than the cost itself.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.load_checkpoint import reference_checkpoint  # noqa: E402
from engine import Environment, ModelPaths  # noqa: E402
from engine.devices import DevicePolicy  # noqa: E402
from engine.executor import Executor  # noqa: E402
from engine.model_store import ModelStore  # noqa: E402
from nodes.media.previews import latent_to_rgb_preview  # noqa: E402
from nodes.pack import build_registry  # noqa: E402
from nodes.sampling.cfg import CfgDenoiser  # noqa: E402
from nodes.sampling.model_sampling import DiscreteModelSampling  # noqa: E402
from nodes.sampling.noise import prepare_noise  # noqa: E402
from nodes.sampling.samplers import SampleRequest, sample  # noqa: E402
from nodes.sampling.schedulers import ksampler_sigmas  # noqa: E402

POSITIVE = "a photo of a cat sitting on a windowsill, highly detailed"
NEGATIVE = "blurry, low quality"
CFG = 7.0


def load_handles(ckpt: Path, device: str, work: Path, precision: str | None = None):
    """MODEL handle, positive/negative CONDITIONING and the store, through the real nodes."""
    store = ModelStore(DevicePolicy.from_env(device=device, precision=precision))
    registry = build_registry(ModelPaths(ckpt.parent.parent), work)
    env = Environment(
        work / "out", work / "tmp", work, models=store, model_paths=ModelPaths(ckpt.parent.parent)
    )
    prompt = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt.name}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": POSITIVE, "clip": ["1", 1]}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": NEGATIVE, "clip": ["1", 1]}},
    }
    result = Executor(registry, env).execute(prompt, prompt_id="bench", outputs=["2", "3"])
    if result.status != "success":
        raise SystemExit(f"loading failed: {result.error and result.error.data()}")
    outs = result.node_outputs
    return outs["1"].MODEL, outs["2"].CONDITIONING, outs["3"].CONDITIONING, store


def run_diffgraph(model, positive, negative, store, size: int, steps: int, previews: bool) -> float:
    """Seconds for one diffgraph euler/normal run of `steps` steps."""
    ms = DiscreteModelSampling.create(model.prediction)
    latents = torch.zeros(1, 4, size // 8, size // 8)

    def unet(x_in, t, embeds, pooled, extras):
        return model.forward(store, x_in, t, embeds, pooled, extras)

    denoiser = CfgDenoiser(unet, ms, positive.entries, negative.entries, CFG)
    req = SampleRequest(
        latents, prepare_noise(latents, 42), ksampler_sigmas(ms, "normal", "euler", steps), "euler", 42
    )

    def on_step(i, x0, x):
        if previews:
            latent_to_rgb_preview(x0, model.latent_format)

    start = time.perf_counter()
    with torch.inference_mode():
        sample(denoiser, ms, model.latent_format, req, model.device, on_step)
    if model.device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start


def diffusers_pipeline(model, store):
    """A diffusers pipeline (SD or SDXL, by the model's family) sharing diffgraph's loaded UNet, Euler scheduler."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline, StableDiffusionXLPipeline

    scheduler = EulerDiscreteScheduler(
        num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear"
    )
    unet = model.load(store)
    if model.adm == "sdxl":
        return StableDiffusionXLPipeline(
            vae=None,
            text_encoder=None,
            text_encoder_2=None,
            tokenizer=None,
            tokenizer_2=None,
            unet=unet,
            scheduler=scheduler,
            force_zeros_for_empty_prompt=False,
            add_watermarker=False,
        )
    return StableDiffusionPipeline(
        vae=None,
        text_encoder=None,
        tokenizer=None,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def run_diffusers(pipe, positive, negative, size: int, steps: int, device: str, dtype) -> float:
    """Seconds for one diffusers Euler run (latent output, embeddings given)."""
    gen = torch.Generator().manual_seed(42)
    latents = torch.randn(1, 4, size // 8, size // 8, generator=gen).to(device, dtype)
    pos, neg = positive.entries[0], negative.entries[0]
    kwargs = {}
    if pos.pooled is not None:  # SDXL: pooled text embeddings; diffusers derives the size ids itself
        kwargs = {
            "pooled_prompt_embeds": pos.pooled.to(device, dtype),
            "negative_pooled_prompt_embeds": neg.pooled.to(device, dtype),
        }
    start = time.perf_counter()
    with torch.inference_mode():
        pipe(
            prompt_embeds=pos.embeds.to(device, dtype),
            negative_prompt_embeds=neg.embeds.to(device, dtype),
            height=size,
            width=size,
            num_inference_steps=steps,
            guidance_scale=CFG,
            latents=latents,
            output_type="latent",
            **kwargs,
        )
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def preview_seconds(model, size: int, calls: int = 200) -> float:
    """Median seconds of one Latent2RGB preview of a [1, 4, size/8, size/8] x0 prediction."""
    x0 = torch.randn(1, 4, size // 8, size // 8).to(model.device)
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        latent_to_rgb_preview(x0, model.latent_format)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


class UnetClock:
    """Seconds spent inside a module's forward calls, summed since the last reset()."""

    def __init__(self, module: torch.nn.Module):
        self.seconds = 0.0
        self._start = 0.0
        module.register_forward_pre_hook(self._enter)
        module.register_forward_hook(self._leave)

    def _enter(self, *_args) -> None:
        self._start = time.perf_counter()

    def _leave(self, *_args) -> None:
        self.seconds += time.perf_counter() - self._start

    def reset(self) -> None:
        self.seconds = 0.0


def _status_kb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return float(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def reset_peak(device: str) -> float:
    """Start a fresh peak measurement; returns the current usage in MiB (the baseline)."""
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        return torch.cuda.memory_allocated() / 2**20
    # Writing 5 to clear_refs resets the kernel's peak-RSS mark (VmHWM) to the current RSS,
    # so each side's peak is its own, not the process's all-time maximum.
    Path("/proc/self/clear_refs").write_text("5")
    return _status_kb("VmRSS") / 1024


def peak_memory_mb(device: str) -> float:
    """Peak GPU memory allocated (CUDA) or peak process RSS (CPU) since reset_peak, in MiB."""
    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return _status_kb("VmHWM") / 1024


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, run the alternating rounds, write the JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--ckpt", type=Path, default=None)
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--steps", type=int, default=None, help="default 4 (8 with --vs-comfyui)")
    ap.add_argument("--rounds", type=int, default=None, help="default 2 (3 with --vs-comfyui)")
    ap.add_argument("--precision", choices=("exact", "fast"), default="exact", help="diffgraph's precision")
    ap.add_argument("--compile", action="store_true", help="torch.compile diffgraph's denoiser")
    ap.add_argument(
        "--vs-diffusers",
        action="store_true",
        help="SD1.5 at 512 (--ckpt) and SDXL at 1024 (--sdxl-ckpt) it/s against diffusers (use --device cuda)",
    )
    ap.add_argument("--sdxl-ckpt", type=Path, help="with --vs-diffusers: the SDXL checkpoint")
    ap.add_argument("--vs-comfyui", metavar="URL", help="compare whole runs with this running ComfyUI server")
    ap.add_argument(
        "--diffgraph-url", help="with --vs-comfyui: a running diffgraph server instead of one started here"
    )
    ap.add_argument(
        "--diffgraph-port", type=int, default=8299, help="with --vs-comfyui: port for the started server"
    )
    ap.add_argument("--models-dir", type=Path, help="with --vs-comfyui: models folder for the started server")
    ap.add_argument(
        "--ckpt-name", default="sd15-random.safetensors", help="with --vs-comfyui: checkpoint name"
    )
    ap.add_argument(
        "--family", choices=("sd", "flux", "sd3"), default="sd", help="flux/sd3: bench/sampling_flow.py"
    )
    ap.add_argument(
        "--flow-file", action="append", metavar="ROLE=NAME", help="flux/sd3: a file other than the default"
    )
    args = ap.parse_args(argv)
    args.steps_given = args.steps is not None
    args.steps = args.steps or 4
    if args.compile:
        os.environ["DIFFGRAPH_COMPILE"] = "1"
    if args.vs_comfyui:
        from bench.vs_comfyui import compare

        if args.diffgraph_url is None and args.models_dir is None:
            ap.error("--vs-comfyui needs --models-dir (or --diffgraph-url)")
        args.rounds = args.rounds or 3
        args.steps = args.steps if args.steps_given else 8
        write(args.out, compare(args))
        return
    args.rounds = args.rounds or 2
    if args.family != "sd":
        from bench.sampling_flow import compare_flow

        write(args.out, compare_flow(args))
        return
    if args.vs_diffusers:
        # The GPU comparison: SD1.5 at 512 and SDXL at 1024, each against diffusers on the same weights.
        runs = {}
        for name, ckpt, size in (("sd15_512", args.ckpt, 512), ("sdxl_1024", args.sdxl_ckpt, 1024)):
            if ckpt is None:
                ap.error(f"--vs-diffusers needs --{'ckpt' if name.startswith('sd15') else 'sdxl-ckpt'}")
            result = compare_with_diffusers(args, ckpt, size)
            result["diffgraph_it_per_s"] = 1.0 / result["diffgraph_s_per_step"]
            result["diffusers_it_per_s"] = 1.0 / result["diffusers_s_per_step"]
            runs[name] = result
        gpu = torch.cuda.get_device_name() if args.device == "cuda" else platform.processor()
        write(args.out, {"device_name": gpu, **runs})
        return
    write(args.out, compare_with_diffusers(args, args.ckpt or reference_checkpoint(), args.size))


def compare_with_diffusers(args: argparse.Namespace, ckpt: Path, size: int) -> dict:
    """Alternating diffgraph / diffusers sampling runs on one checkpoint and size; the JSON-ready result."""
    with tempfile.TemporaryDirectory() as work:
        model, positive, negative, store = load_handles(ckpt, args.device, Path(work), args.precision)
    pipe = diffusers_pipeline(model, store)
    dtype = model.compute_dtype
    ours, theirs, with_previews, memory = [], [], [], {}
    clock = UnetClock(pipe.unet)
    outside: dict[str, list[float]] = {"ours": [], "theirs": []}
    # Warm-up of both paths (allocator, kernels) before timing.
    run_diffgraph(model, positive, negative, store, size, 1, False)
    run_diffusers(pipe, positive, negative, size, 1, args.device, dtype)
    for round_index in range(args.rounds):
        # Who goes first alternates, so drift in machine load does not favour one side.
        order = ("ours", "theirs") if round_index % 2 == 0 else ("theirs", "ours")
        for side in order:
            base = reset_peak(args.device)
            clock.reset()
            if side == "ours":
                total = run_diffgraph(model, positive, negative, store, size, args.steps, False)
                ours.append(total / args.steps)
            else:
                total = run_diffusers(pipe, positive, negative, size, args.steps, args.device, dtype)
                theirs.append(total / args.steps)
            outside[side].append((total - clock.seconds) / args.steps)
            name = "diffgraph" if side == "ours" else "diffusers"
            peak = peak_memory_mb(args.device)
            # Both sides share the loaded weights; the working set above the baseline is what differs.
            memory[f"{name}_peak_mb"] = max(memory.get(f"{name}_peak_mb", 0.0), peak)
            memory[f"{name}_working_mb"] = max(memory.get(f"{name}_working_mb", 0.0), peak - base)
        with_previews.append(
            run_diffgraph(model, positive, negative, store, size, args.steps, True) / args.steps
        )
    ours_s, theirs_s, prev_s = min(ours), min(theirs), min(with_previews)
    preview_s = preview_seconds(model, size)
    result = {
        "diffgraph_s_per_step": ours_s,
        "diffusers_s_per_step": theirs_s,
        "ratio": ours_s / theirs_s,
        "ratio_of_medians": sorted(ours)[len(ours) // 2] / sorted(theirs)[len(theirs) // 2],
        "preview_overhead_pct": 100.0 * preview_s / ours_s,
        "preview_ms_per_step": 1000.0 * preview_s,
        "preview_overhead_pct_in_loop": 100.0 * (prev_s - ours_s) / ours_s,
        "diffgraph_outside_unet_ms_per_step": 1000.0 * min(outside["ours"]),
        "diffusers_outside_unet_ms_per_step": 1000.0 * min(outside["theirs"]),
        "method": "per-step seconds = fastest of `rounds` alternating runs of `steps` steps each",
        "device": args.device,
        "size": size,
        "checkpoint": ckpt.name,
        "steps": args.steps,
        "rounds": args.rounds,
        "cfg": CFG,
        "dtype": str(dtype),
        "precision": args.precision,
        "compile": bool(args.compile),
        "samples": {"diffgraph": ours, "diffusers": theirs, "diffgraph_previews": with_previews},
        **memory,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
    }
    return result


def write(out: Path, result: dict) -> None:
    """Write the JSON result and print it without the raw samples."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    shown = {k: v for k, v in result.items() if k != "samples"}
    for side in ("comfyui", "diffgraph"):
        if isinstance(shown.get(side), dict):
            shown[side] = {k: v for k, v in shown[side].items() if not k.endswith("_samples")}
    print(json.dumps(shown, indent=2))


if __name__ == "__main__":
    main()
