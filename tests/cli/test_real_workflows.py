"""`diffgraph run` on the real nodes and tiny random checkpoints: the sweep cache report and the demo."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image as PILImage

from diffgraph import demo
from diffgraph.cli import main
from engine import ModelPaths

ROOT = Path(__file__).resolve().parents[2]
TXT2IMG = ROOT / "workflows" / "txt2img_sd15.json"
NEEDED = {
    "CheckpointLoaderSimple",
    "CLIPTextEncode",
    "EmptyLatentImage",
    "KSampler",
    "VAEDecode",
    "SaveImage",
}


@pytest.fixture(scope="module")
def real_nodes(tmp_path_factory):
    """The model stack, samplers and SaveImage must all be registered in the builtin pack."""
    from nodes.pack import build_registry

    registry = build_registry(ModelPaths(tmp_path_factory.mktemp("m")), tmp_path_factory.mktemp("i"))
    missing = NEEDED - set(registry)
    assert not missing, f"the builtin pack lacks nodes the shipped workflow needs: {sorted(missing)}"
    assert TXT2IMG.is_file(), f"{TXT2IMG} is missing"


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.slow
def test_run_txt2img_seed_sweep_loads_and_encodes_once(
    real_nodes, tiny_models_dir, tiny_sd15_name, tmp_path, capsys
):
    code, out, err = run_cli(
        capsys,
        "run",
        str(TXT2IMG),
        "--models-dir",
        str(tiny_models_dir),
        "--out",
        str(tmp_path / "out"),
        "--set",
        f"Load Checkpoint.ckpt_name={tiny_sd15_name}",
        "--set",
        "EmptyLatentImage.width=64",
        "--set",
        "EmptyLatentImage.height=64",
        "--set",
        "KSampler.steps=2",
        "--seeds",
        "1-20",
        "--json",
    )
    assert code == 0, err
    items = json.loads(out)["items"]
    assert len(items) == 20 and all(i["status"] == "success" for i in items)
    first = sorted(items[0]["executed_class_types"].values())
    assert first == [
        "CLIPTextEncode",
        "CLIPTextEncode",
        "CheckpointLoaderSimple",
        "EmptyLatentImage",
        "KSampler",
        "SaveImage",
        "VAEDecode",
    ]
    for item in items[1:]:
        # The cache report: per seed only the sampler, the decode and the save ran; the checkpoint
        # load and both text encodings came from the cache.
        assert sorted(item["executed_class_types"].values()) == ["KSampler", "SaveImage", "VAEDecode"]
        assert sorted(item["cached_class_types"].values()) == [
            "CLIPTextEncode",
            "CLIPTextEncode",
            "CheckpointLoaderSimple",
            "EmptyLatentImage",
        ]
    ran = [c for i in items for c in i["executed_class_types"].values()]
    assert ran.count("CheckpointLoaderSimple") == 1 and ran.count("CLIPTextEncode") == 2
    assert ran.count("KSampler") == ran.count("VAEDecode") == ran.count("SaveImage") == 20
    pngs = [Path(i["files"][0]) for i in items]
    assert len(set(pngs)) == 20 and all(p.suffix == ".png" and p.is_file() for p in pngs)
    assert pngs[0].read_bytes() != pngs[1].read_bytes()


@pytest.mark.slow
def test_readme_main_job_runs_on_a_fresh_machine(real_nodes, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DIFFGRAPH_MODELS_DIR", raising=False)
    code, out, err = run_cli(capsys, "run", str(TXT2IMG))  # the README command, verbatim
    assert code == 0, err
    assert "DEMO MODE" in err and "NOISE" in err and "running #3 KSampler" in err and "step 20/20" in err
    assert "512x512 -> 256x256" in err and "put a checkpoint file in models/checkpoints/" in err
    assert (tmp_path / "models" / "checkpoints" / demo.DEMO_CHECKPOINT).is_file()
    (png,) = out.split()
    assert png == str(Path("output") / "txt2img_sd15_00001_.png")
    with PILImage.open(tmp_path / png) as image:
        assert image.size == (256, 256)


@pytest.mark.slow
def test_session_returns_typed_real_outputs(real_nodes, tiny_models_dir, tiny_sd15_name, tmp_path):
    import diffgraph
    from nodes.types import Latent

    with diffgraph.Session(models_dir=tiny_models_dir, output_dir=tmp_path) as session:
        wf = session.load(TXT2IMG).set("Load Checkpoint", "ckpt_name", tiny_sd15_name)
        wf.set("EmptyLatentImage", "width", 64).set("EmptyLatentImage", "height", 64).set(
            "KSampler", "steps", 2
        )
        result = session.run(wf)
        assert isinstance(result.outputs["3"].LATENT, Latent)
        assert result.outputs["3"].LATENT.samples.shape == (1, 4, 8, 8)
        again = session.run(wf.copy().set("KSampler", "seed", 7))
        assert sorted(again.executed) == ["3", "8", "9"]
