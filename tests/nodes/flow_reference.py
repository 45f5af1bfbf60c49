"""The reduced-depth full-width FLUX / SD3.5 reference files, and headless runs of workflows on them.

The files (../shared/reference/flow) are rebuilt byte for byte by make-checkpoint (seed 1234, the README's
rule). Tests point $DIFFGRAPH_FLOW_MODELS at a models folder already holding them (diffusion_models/,
text_encoders/, vae/, checkpoints/), or set $DIFFGRAPH_TEST_CACHE to build the ones they need there once;
without either they are skipped.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from engine import Environment, ModelPaths
from engine.devices import DevicePolicy
from engine.executor import Executor
from engine.model_store import ModelStore
from engine.validation import validate_prompt
from nodes.diffusion.flux_layout import make_flux_file
from nodes.diffusion.make_checkpoint import make_sd3_checkpoint
from nodes.diffusion.make_text_encoder import make_text_encoder

SEED = 1234
# (folder, file name as the workflows name it) -> how make-checkpoint rebuilds it, and its size in bytes.
FILES = {
    ("diffusion_models", "flux1-dev-random-d2s2.safetensors"): (("flux", "flux1-dev"), 2_053_951_376),
    ("diffusion_models", "flux1-schnell-random-d2s2.safetensors"): (("flux", "flux1-schnell"), 2_033_491_448),
    ("vae", "flux-ae-random.safetensors"): (("flux", "flux-ae"), 335_303_948),
    ("text_encoders", "clip_l-random.safetensors"): (("text", "clip_l", "fp16"), 246_144_152),
    ("text_encoders", "clip_g-random.safetensors"): (("text", "clip_g", "fp16"), 1_389_382_176),
    ("text_encoders", "t5xxl-random_fp8_e4m3fn.safetensors"): (
        ("text", "t5xxl", "fp8_e4m3fn"),
        4_762_338_536,
    ),
    ("checkpoints", "sd3.5m-random-d2.safetensors"): (("sd3", "sd3.5-medium"), 209_409_038),
    # Not in the shared reference: SD3.5 large's layout (no dual attention, 192 grid) at depth 2, which
    # ComfyUI reads as 2 heads of 64 (it takes width and head count from the block count, so a
    # full-width 2-block file cannot load there). Built on the fly (20 s) when a models folder lacks it.
    ("checkpoints", "sd3.5l-random-d2.safetensors"): (("sd3", "sd3.5-large"), 180_865_262),
}


def _build(how: tuple[str, ...], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if how[0] == "flux":
        make_flux_file(how[1], "reduced", SEED, path)
    elif how[0] == "sd3":
        make_sd3_checkpoint(how[1], "reduced", SEED, path)
    else:
        make_text_encoder(how[1], "full", SEED, path, how[2])


def flow_models_dir(only: tuple[tuple[str, str], ...] | None = None) -> Path:
    """A models folder holding the reference files (given, or the ones in `only` built into the test cache)."""
    given = os.environ.get("DIFFGRAPH_FLOW_MODELS")
    if given:
        return Path(given)
    cache = os.environ.get("DIFFGRAPH_TEST_CACHE")
    if not cache:
        pytest.skip("set DIFFGRAPH_FLOW_MODELS or DIFFGRAPH_TEST_CACHE for the FLUX / SD3.5 reference files")
    root = Path(cache) / "flow"
    for (folder, name), (how, size) in FILES.items():
        path = root / folder / name
        if (only is None or (folder, name) in only) and not (path.is_file() and path.stat().st_size == size):
            _build(how, path)
    return root


def extra_flow_file(key: tuple[str, str], size: int, build: Callable[[Path], object], scratch: Path) -> Path:
    """A further reduced file (folder, name): beside the reference files, or built once into the test
    cache (or `scratch`) when missing or of another size."""
    given = flow_models_dir(only=()) / key[0] / key[1]  # builds no reference file
    if given.is_file():
        return given
    cache = os.environ.get("DIFFGRAPH_TEST_CACHE")
    path = (Path(cache) / "flow" if cache else scratch) / key[0] / key[1]
    if not (path.is_file() and path.stat().st_size == size):
        path.parent.mkdir(parents=True, exist_ok=True)
        build(path)
    return path


def linked_models(root: Path, files: dict[tuple[str, str], Path]) -> Path:
    """A models folder under `root` holding each (folder, name) as a hard link to its file (model names
    may not lead outside their folder, so symbolic links would be refused)."""
    for (folder, name), source in files.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        os.link(source.resolve(), root / folder / name)
    return root


def flow_models_for(needed: tuple[tuple[str, str], ...], work: Path) -> Path:
    """A models folder holding `needed`: the reference folder, or one linking its folders beside built files.

    Files a given $DIFFGRAPH_FLOW_MODELS lacks (those not in the shared reference) are built into
    `work`; the folders they are not in are linked whole (model names resolve inside their folder).
    """
    reference = flow_models_dir(needed)
    missing = [key for key in needed if not (reference / key[0] / key[1]).is_file()]
    if not missing:
        return reference
    root = work / "models"
    built_in = {folder for folder, _ in missing}
    for folder in {folder for folder, _ in needed} - built_in:
        (root / folder).parent.mkdir(parents=True, exist_ok=True)
        (root / folder).symlink_to(reference / folder, target_is_directory=True)
    for folder, name in needed:
        if folder in built_in and (folder, name) not in missing:
            raise AssertionError(
                f"{folder}/{name}: a folder mixing built and reference files is not supported"
            )
    for folder, name in missing:
        _build(FILES[(folder, name)][0], root / folder / name)
    return root


def files_named_by(*prompts: dict) -> tuple[tuple[str, str], ...]:
    """The reference files (folder, name) that the prompts' loader inputs name."""
    names = {
        v
        for prompt in prompts
        for node in prompt.values()
        for v in node["inputs"].values()
        if isinstance(v, str)
    }
    return tuple(key for key in FILES if key[1] in names)


class WorkflowRunner:
    """One registry, environment and executor (so one output cache) for several workflows on the same files."""

    def __init__(self, models: Path, work: Path):
        from nodes.pack import build_registry

        self.output = work / "output"
        self.registry = build_registry(ModelPaths(models), work)
        self.env = Environment(
            output_dir=self.output,
            temp_dir=work / "temp",
            input_dir=work,
            models=ModelStore(DevicePolicy.from_env(device="cpu")),
            model_paths=ModelPaths(models),
        )
        self.executor = Executor(self.registry, self.env)

    def run(self, name: str, prompt: dict) -> Path:
        """Validate and run a prompt; return the folder its SaveLatent nodes wrote to (`name/`)."""
        prompt = json.loads(json.dumps(prompt))
        for node in prompt.values():
            if node["class_type"] == "SaveLatent":
                node["inputs"]["filename_prefix"] = f"{name}/{node['inputs']['filename_prefix']}"
        checked = validate_prompt(prompt, self.registry, env=self.env)
        assert checked.ok, checked.node_errors or checked.error
        torch.set_num_threads(os.cpu_count() or 1)
        result = self.executor.execute(checked.prompt, prompt_id=name, outputs=checked.outputs)
        assert result.status == "success", result.error and result.error.data()
        return self.output / name


def saved_latent(folder: Path, key: str) -> torch.Tensor:
    """The tensor of the one `<key>_*.latent` file SaveLatent wrote into `folder`."""
    saved = sorted(folder.glob(f"{key}_*.latent"))
    assert len(saved) == 1, saved
    return load_file(str(saved[0]))["latent_tensor"].float()


def rel_l2(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    """Relative L2 distance of our tensor to the reference one."""
    return float((ours.float() - theirs.float()).norm() / theirs.float().norm())


CASES_DIR = Path(__file__).parent / "data" / "flow_cases"
MAX_REL_L2 = 1e-4


def case_prompt(case: str) -> dict:
    """The API workflow of a recorded case in data/flow_cases/."""
    return json.loads((CASES_DIR / case / "workflow_api.json").read_text())


def runner_for(cases: list[str], work: Path) -> WorkflowRunner:
    """A runner over the models folder holding every file the cases name (skips without one)."""
    return WorkflowRunner(flow_models_for(files_named_by(*map(case_prompt, cases)), work), work)


def compare_case(runner: WorkflowRunner, case: str) -> dict[str, float]:
    """Run a recorded case; relative L2 of each latent it saves against ComfyUI's, checked against 1e-4."""
    folder = runner.run(case, case_prompt(case))
    theirs = load_file(str(CASES_DIR / case / "latent.safetensors"))
    rels = {}
    for key, reference in theirs.items():
        ours = saved_latent(folder, key)
        assert ours.shape == reference.shape, (key, ours.shape, reference.shape)
        rels[key] = rel_l2(ours, reference)
    print(case, {k: f"{v:.2g}" for k, v in rels.items()})
    assert all(v <= MAX_REL_L2 for v in rels.values()), f"{case}: relative L2 vs ComfyUI {rels}"
    return rels
