"""Demo mode (`diffgraph run --demo`): a tiny random-weight checkpoint stands in for a missing one, loudly.

Used when the user asked for it with --demo, or on a fresh machine (no checkpoint at all), only for
checkpoints that are missing, and always announced: the demo file has its own name (never the missing
checkpoint's), so nobody mistakes it for real weights later. Demo runs also render at most
DEMO_MAX_SIDE pixels a side: even the tiny model spends most of its time in full-resolution attention
(4,096 latent tokens at 512x512), and noise looks the same at any size.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from diffgraph.api import Session
from diffgraph.workflow import Workflow, describe_node

DEMO_CHECKPOINT = "diffgraph-demo-sd15-random.safetensors"
DEMO_MAX_SIDE = 256


def missing_checkpoints(session: Session, workflow: Workflow) -> list[tuple[str, str]]:
    """(node id, name) of every constant `ckpt_name` that is not in the models folder."""
    available = set(session.model_paths.list("checkpoints"))
    return [
        (view.id, view.inputs["ckpt_name"])
        for view in workflow
        if isinstance(view.inputs.get("ckpt_name"), str) and view.inputs["ckpt_name"] not in available
    ]


def make_demo_checkpoint(path: Path) -> None:
    """Write the tiny random-weight SD1.5 checkpoint (the maker writes through a temp name)."""
    from nodes.diffusion.make_checkpoint import make_checkpoint

    make_checkpoint("sd15", "tiny", 0, path)


def no_real_checkpoints(session: Session) -> bool:
    """True on a fresh machine: the checkpoints folder holds nothing but (maybe) the demo checkpoint."""
    return not [n for n in session.model_paths.list("checkpoints") if n != DEMO_CHECKPOINT]


def choose(session: Session, workflow: Workflow, mode: str) -> bool:
    """Whether to use the demo: `on` (--demo), `off` (--no-demo), or `auto`: only on a fresh machine."""
    if mode == "auto":
        return no_real_checkpoints(session) and bool(missing_checkpoints(session, workflow))
    return mode == "on"


@dataclass
class DemoPlan:
    """What demo mode changed: {node id: missing checkpoint name}, {node id: "512x512 -> 256x256"}."""

    replaced: dict[str, str] = field(default_factory=dict)
    resized: dict[str, str] = field(default_factory=dict)


def prepare(session: Session, workflow: Workflow, stream: TextIO, explicit: bool) -> DemoPlan:
    """Point every missing checkpoint at the demo checkpoint (made on first use); say so plainly."""
    missing = missing_checkpoints(session, workflow)
    if not missing:
        print(
            "--demo: every checkpoint the workflow names is present; running with real weights.", file=stream
        )
        return DemoPlan()
    folder = session.model_paths.folder("checkpoints")
    path = folder / DEMO_CHECKPOINT
    if not path.is_file():
        print(f"demo: writing a tiny random-weight checkpoint to {path} ...", file=stream, flush=True)
        make_demo_checkpoint(path)
    for node_id, _ in missing:
        workflow.set(node_id, "ckpt_name", DEMO_CHECKPOINT)
    shrunk = shrink_latents(session, workflow)
    print(notice(workflow, missing, folder, explicit, shrunk), file=stream, flush=True)
    return DemoPlan(dict(missing), dict(shrunk))


def demo_size(width: int, height: int) -> tuple[int, int]:
    """(width, height) scaled so the longer side is at most DEMO_MAX_SIDE, in multiples of 8."""
    scale = min(1.0, DEMO_MAX_SIDE / max(width, height))
    return max(8, round(width * scale / 8) * 8), max(8, round(height * scale / 8) * 8)


def shrink_latents(session: Session, workflow: Workflow) -> list[tuple[str, str]]:
    """Cap the constant width/height of every node that makes a LATENT; (node id, "WxH -> wxh") changed."""
    changed = []
    for view in workflow:
        spec = session.registry.spec(view.class_type)
        width, height = view.inputs.get("width"), view.inputs.get("height")
        if spec is None or not any(out.io_type == "LATENT" for out in spec.outputs):
            continue
        if not (isinstance(width, int) and isinstance(height, int)):
            continue  # linked or odd values: leave them to validation
        small = demo_size(width, height)
        if small != (width, height):
            workflow.set(view.id, "width", small[0]).set(view.id, "height", small[1])
            changed.append((view.id, f"{width}x{height} -> {small[0]}x{small[1]}"))
    return changed


def notice(
    workflow: Workflow,
    missing: list[tuple[str, str]],
    folder: Path,
    explicit: bool,
    shrunk: list[tuple[str, str]] | None = None,
) -> str:
    """The banner every demo run prints: what was replaced, that images are noise, how to get real ones."""
    names = ", ".join(sorted({name for _, name in missing}))
    nodes = ", ".join(describe_node(nid, workflow.prompt[nid]) for nid, _ in missing)
    why = (
        "--demo was given"
        if explicit
        else f"{folder}/ has no checkpoint yet (pass --no-demo to fail instead)"
    )
    lines = [
        "=" * 78,
        f"DEMO MODE: checkpoint {names} is not in {folder}/, and {why}.",
        f"Using {DEMO_CHECKPOINT} instead ({nodes}): a tiny model with RANDOM weights.",
        "Its images are NOISE. This run only shows the whole pipeline working.",
    ]
    if shrunk:
        sizes = ", ".join(f"{describe_node(nid, workflow.prompt[nid])} {change}" for nid, change in shrunk)
        lines.append(f"To finish quickly on a CPU the demo also renders smaller: {sizes}.")
    lines += [
        f"For real images, put a checkpoint file in {folder}/ (named {names},",
        "or pass --set NODE.ckpt_name=<your file>), or point --models-dir / DIFFGRAPH_MODELS_DIR",
        "at your ComfyUI models folder.",
        "=" * 78,
    ]
    return "\n".join(lines)
