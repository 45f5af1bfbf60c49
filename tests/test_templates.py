"""ComfyUI's own workflow templates (the `comfyui-workflow-templates` version ComfyUI 0.3.64 pins).

The templates are real files saved by ComfyUI's frontend over the years, legacy widget entries
included; they come from the test dependency, never copied into this repository.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.template_coverage import cover, installed_templates, read_templates
from bench.template_families import API, NEW_ARCH
from diffgraph.api import Session

PINNED = "0.1.95"
# Templates of the pinned set that run on SD1.5/SDXL-family models (no new model architecture).
SD_TEMPLATES = {
    "2_pass_pose_worship",
    "area_composition",
    "area_composition_square_area_for_subject",
    "controlnet_example",
    "default",
    "depth_controlnet",
    "depth_t2i_adapter",
    "embedding_example",
    "esrgan_example",
    "gligen_textbox_example",
    "hiresfix_esrgan_workflow",
    "hiresfix_latent_workflow",
    "image2image",
    "inpaint_example",
    "inpaint_model_outpainting",
    "latent_upscale_different_prompt_model",
    "lora",
    "lora_multiple",
    "mixing_controlnets",
    "sdxl_refiner_prompt_example",
    "sdxl_revision_text_prompts",
    "sdxl_revision_zero_positive",
    "sdxl_simple_example",
    "sdxlturbo_example",
}


def test_templates_package_is_the_pinned_version():
    label, _ = installed_templates()
    assert label.endswith(PINNED), f"tests expect comfyui-workflow-templates=={PINNED}, found {label}"


def test_default_template_maps_widgets_after_legacy_seed_toggle(tmp_path: Path):
    _, folder = installed_templates()
    session = Session(
        models_dir=tmp_path / "models", input_dir=tmp_path / "input", output_dir=tmp_path / "out"
    )
    (tmp_path / "models" / "checkpoints").mkdir(parents=True)
    (tmp_path / "models" / "checkpoints" / "v1-5-pruned-emaonly-fp16.safetensors").touch()
    workflow = session.load(folder / "default.json")
    sampler = next(n for n in workflow.prompt.values() if n["class_type"] == "KSampler")["inputs"]
    # The saved values are [seed, true, 20, 8, "euler", "normal", 1]: the `true` is an old control toggle.
    assert {k: sampler[k] for k in ("seed", "steps", "cfg", "sampler_name", "scheduler", "denoise")} == {
        "seed": 156680208700286,
        "steps": 20,
        "cfg": 8,
        "sampler_name": "euler",
        "scheduler": "normal",
        "denoise": 1,
    }
    result = session.validate(workflow)
    assert result.ok and not result.node_errors, result.node_errors


@pytest.mark.slow
def test_pinned_templates_validate_or_name_the_family_they_wait_for(tmp_path: Path):
    label, folder = installed_templates()
    report = cover(label, list(read_templates(folder)), tmp_path)
    templates = report["templates"]
    assert report["templates_total"] == 172
    assert set(templates) >= SD_TEMPLATES
    for name in sorted(SD_TEMPLATES):
        entry = templates[name]
        # Either it validates, or every node type it lacks belongs to a named later issue.
        assert entry["validates"] or (entry["missing"] and entry["blocked_by"]), (name, entry["problems"])
        assert not {API, NEW_ARCH} & set(entry["blocked_by"]), (name, entry["blocked_by"])
    for name in ("default", "hiresfix_latent_workflow", "image2image", "lora", "sdxl_simple_example"):
        assert templates[name]["validates"], (name, templates[name]["problems"])
    # Nodes diffgraph knows never carry a wrongly mapped widget value in any template.
    wrong = {name: e["problems"] for name, e in templates.items() if e["problems"]}
    assert set(wrong) <= {"image_chroma1_radiance_text_to_image"}, wrong
