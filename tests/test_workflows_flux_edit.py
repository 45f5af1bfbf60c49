"""The FLUX Kontext edit and FLUX Fill inpaint workflows: their inputs steer the images they make.

They run as in tests/test_workflows.py (tiny random files under the workflows' names, 64x64, Kontext's
size table cut to the test size), once as shipped and once with one input changed.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image as PILImage

from nodes.defs import flux_kontext
from tests.test_workflows import (  # noqa: F401  (fixtures)
    TEST_SIZE,
    WORKFLOWS,
    load_api,
    models_dir,
    registry,
    runner,
    saved_files,
    shrink,
)


def _image(run, env, prompt) -> np.ndarray:
    pngs = saved_files(env, run(prompt), ".png")
    assert len(pngs) == 1
    return np.asarray(PILImage.open(pngs[0]).convert("RGB")).astype(np.int16)


@pytest.mark.slow
def test_flux_kontext_edit_follows_its_reference_image(runner, monkeypatch):  # noqa: F811
    monkeypatch.setattr(flux_kontext, "KONTEXT_RESOLUTIONS", ((TEST_SIZE, TEST_SIZE),))
    run, env = runner
    prompt = shrink(load_api(WORKFLOWS / "flux_kontext_edit.json"))
    edited = _image(run, env, prompt)
    del prompt["177"]["inputs"]["latent"]
    without_reference = _image(run, env, prompt)
    assert edited.shape == (TEST_SIZE, TEST_SIZE, 3)
    # A random tiny model attends only weakly to the extra tokens (a fraction of an 8-bit level on
    # average here); a model that ignored them would give the very same picture.
    assert np.abs(edited - without_reference).mean() > 0.05


@pytest.mark.slow
def test_flux_fill_inpaint_follows_its_mask(runner, registry):  # noqa: F811
    _, input_dir = registry
    opaque = PILImage.open(input_dir / "example.png").convert("RGB")
    opaque.save(input_dir / "opaque.png")
    run, env = runner
    prompt = shrink(load_api(WORKFLOWS / "inpaint_flux_fill.json"))
    masked = _image(run, env, prompt)
    prompt["17"]["inputs"]["image"] = "opaque.png"
    unmasked = _image(run, env, prompt)
    assert masked.shape == (TEST_SIZE, TEST_SIZE, 3)
    # The mask reaches the model as input channels: a different mask, a different picture.
    assert np.abs(masked - unmasked).mean() > 1.0


@pytest.mark.slow
def test_flux_fill_differential_diffusion_acts_with_a_noise_mask(runner, registry):  # noqa: F811
    _, input_dir = registry
    alpha = np.tile(np.linspace(0, 255, TEST_SIZE, dtype=np.uint8), (TEST_SIZE, 1))
    rgba = np.dstack([np.full((TEST_SIZE, TEST_SIZE, 3), 150, np.uint8), alpha])
    PILImage.fromarray(rgba, "RGBA").save(input_dir / "soft.png")
    run, env = runner
    prompt = shrink(load_api(WORKFLOWS / "inpaint_flux_fill.json"))
    prompt["38"]["inputs"]["noise_mask"] = True
    prompt["17"]["inputs"]["image"] = "soft.png"
    differential = _image(run, env, prompt)
    prompt["3"]["inputs"]["model"] = ["31", 0]
    plain = _image(run, env, prompt)
    # A feathered mask: Differential Diffusion repaints its weaker part for fewer steps.
    assert np.abs(differential - plain).mean() > 0.05


@pytest.mark.slow
def test_flux_kontext_edit_runs_with_cfg_and_a_negative_without_references(runner, monkeypatch):  # noqa: F811
    monkeypatch.setattr(flux_kontext, "KONTEXT_RESOLUTIONS", ((TEST_SIZE, TEST_SIZE),))
    run, env = runner
    prompt = shrink(load_api(WORKFLOWS / "flux_kontext_edit.json"))
    prompt["31"]["inputs"].update(cfg=2.0, steps=2)
    # Positive (with references) and negative (without) cannot share a model call: run apart.
    assert _image(run, env, prompt).shape == (TEST_SIZE, TEST_SIZE, 3)
