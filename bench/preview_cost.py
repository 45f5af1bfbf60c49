"""What a live preview costs the sampling thread per step: made in the step (before) vs handed to the worker.

For each preview kind (latent2rgb projection, a TAESD-shaped decoder with random weights) and latent
size, it times on the calling thread: making the picture plus its JPEG (what a step paid when previews
were made inline and encoded with them), and `PreviewWorker.submit` (what a step pays now; the picture
and its JPEG are made on other threads). Fractions are of a steady-state step taken from a sampling
benchmark result (default: the diffgraph exact-mode step of bench/results/sampling_vs_comfyui_exact.json).

    python -m bench.preview_cost --out bench/results/preview_cost.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from nodes.media.preview_worker import PreviewWorker
from nodes.media.previews import latent_to_rgb_preview, taesd_previewer
from nodes.types import SD15_LATENT
from server.streams import encode_preview

STEP_SOURCE = Path(__file__).parent / "results" / "sampling_vs_comfyui_exact.json"


def random_taesd() -> torch.nn.Module:
    """A TAESD decoder of the real shape with random weights (the cost does not depend on the values)."""
    from diffusers.models.autoencoders.vae import DecoderTiny

    torch.manual_seed(0)
    decoder = DecoderTiny(
        in_channels=4,
        out_channels=3,
        num_blocks=(3, 3, 3, 1),
        block_out_channels=(64, 64, 64, 64),
        upsampling_scaling_factor=2,
        act_fn="relu",
        upsample_fn="nearest",
    )
    return decoder.eval()


def median_ms(fn: Any, repeat: int) -> float:
    """Median wall time of fn() in milliseconds, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e3


def measure(previewer: Any, x0: torch.Tensor, repeat: int, step_s: float) -> dict[str, float]:
    """Inline cost (picture + JPEG) and worker hand-over cost per step, and both as a share of a step."""
    inline_ms = median_ms(lambda: encode_preview(previewer(x0)), repeat)
    sent: list[Any] = []
    worker = PreviewWorker(previewer, lambda picture: sent.append(encode_preview(picture)))
    submit_ms = median_ms(lambda: worker.submit(0, x0), repeat)
    worker.close()
    return {
        "inline_ms": inline_ms,
        "inline_share_of_step": inline_ms / 1e3 / step_s,
        "submit_ms": submit_ms,
        "submit_share_of_step": submit_ms / 1e3 / step_s,
        "pictures_made_by_worker": len(sent),
    }


def main(argv: list[str] | None = None) -> None:
    """Run the measurement and write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--step-s", type=float, default=None, help="step time to compare against")
    args = parser.parse_args(argv)
    step_s = args.step_s
    source = "--step-s"
    if step_s is None:
        step_s = float(json.loads(STEP_SOURCE.read_text())["diffgraph"]["step_s_median"])
        source = f"{STEP_SOURCE.name}: diffgraph step_s_median (full-size SD1.5, 256x256, CFG, exact, CPU)"
    taesd = random_taesd()
    results: dict[str, Any] = {}
    for pixels in (256, 512):
        x0 = torch.randn(1, 4, pixels // 8, pixels // 8)
        kinds = {
            "latent2rgb": lambda x: latent_to_rgb_preview(x, SD15_LATENT),
            "taesd": taesd_previewer(taesd),
        }
        for kind, previewer in kinds.items():
            results[f"{kind}_{pixels}px"] = measure(previewer, x0, args.repeat, step_s)
    report = {
        "what": "sampling-thread cost of one live preview per step: inline (before) vs PreviewWorker.submit",
        "step_s": step_s,
        "step_s_source": source,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "loadavg": list(os.getloadavg()),
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
