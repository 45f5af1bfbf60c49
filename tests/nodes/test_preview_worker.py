"""Previews off the sampling thread: never blocking a step, in step order, latest wins, failures raised."""

from __future__ import annotations

import shutil
import time

import pytest
import torch

from engine import Environment, ModelPaths, UserFacingError
from engine.events import Event, Executing, PreviewImage, Progress
from engine.executor import Executor
from engine.validation import validate_prompt
from nodes.media.preview_worker import PreviewWorker
from nodes.media.previews import latent_to_rgb_preview
from nodes.types import SD15_LATENT
from tests.nodes.helpers_models import tiny_preview_txt2img


def _step_of(x0: torch.Tensor) -> int:
    return int(x0[0, 0, 0, 0])


def test_preview_worker_slow_previewer_never_blocks_a_step_and_keeps_order():
    delivered: list[int] = []

    def slow_picture(x0):
        time.sleep(0.15)
        return _step_of(x0)

    worker = PreviewWorker(slow_picture, delivered.append, duty=1.0)
    waits = []
    for step in range(10):
        started = time.perf_counter()
        worker.submit(step, torch.full((2, 4, 3, 3), float(step)))
        waits.append(time.perf_counter() - started)
        time.sleep(0.02)  # a very fast "step"
    worker.close()
    assert max(waits) < 0.1, waits  # the previewer sleeps 0.15 s; submit never waits for it
    assert delivered == sorted(delivered) and len(set(delivered)) == len(delivered)
    assert delivered[-1] == 9  # the newest step is always shown before the node ends
    assert worker.dropped > 0 and worker.dropped + worker.delivered == 10


def test_preview_worker_expensive_previews_keep_to_their_share_of_the_time():
    delivered: list[int] = []

    def costly(x0):
        time.sleep(0.05)
        return _step_of(x0)

    worker = PreviewWorker(costly, delivered.append, duty=0.25)
    started = time.perf_counter()
    for step in range(60):
        worker.submit(step, torch.full((1, 4, 2, 2), float(step)))
        time.sleep(0.01)
    elapsed = time.perf_counter() - started
    worker.close()
    # At most a quarter of the time making pictures (plus the final one at close), newest last.
    assert 2 <= len(delivered) <= 0.25 * elapsed / 0.05 + 2, (len(delivered), elapsed)
    assert delivered[-1] == 59 and delivered == sorted(delivered)


def test_preview_worker_reads_its_own_copy_of_x0():
    delivered: list[int] = []
    worker = PreviewWorker(_step_of, delivered.append)
    x0 = torch.full((1, 4, 2, 2), 3.0)
    worker.submit(0, x0)
    x0.fill_(7.0)  # the sampler reuses or changes its tensors after handing them over
    worker.close()
    assert delivered == [3]


def test_preview_worker_failure_is_raised_on_the_sampler_thread():
    def broken(_x0):
        raise UserFacingError("no colour factors")

    worker = PreviewWorker(broken, lambda _p: None)
    worker.submit(0, torch.zeros(1, 4, 2, 2))
    with pytest.raises(UserFacingError, match="no colour factors"):
        worker.close()


def test_preview_worker_pictures_equal_the_direct_ones():
    x0 = torch.randn(1, 4, 8, 8)
    pictures = []
    worker = PreviewWorker(lambda x: latent_to_rgb_preview(x, SD15_LATENT), pictures.append)
    worker.submit(0, x0)
    worker.close()
    assert pictures[0].tobytes() == latent_to_rgb_preview(x0, SD15_LATENT).tobytes()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_preview_worker_on_cuda_matches_cpu_pictures():
    x0 = torch.randn(1, 4, 16, 16)
    pictures = []
    worker = PreviewWorker(lambda x: latent_to_rgb_preview(x, SD15_LATENT), pictures.append)
    worker.submit(0, x0.cuda())
    worker.close()
    expected = latent_to_rgb_preview(x0, SD15_LATENT)
    got = torch.tensor(list(pictures[0].getdata()), dtype=torch.float32)
    want = torch.tensor(list(expected.getdata()), dtype=torch.float32)
    assert float((got - want).abs().max()) <= 1.0  # GPU and CPU matmuls round differently by a unit


# ------------------------------------------------------------------ a real sampler run, slow consumer


def test_sampler_with_a_slow_preview_consumer_never_stalls(tmp_path, tiny_sd15_path, model_store):
    from nodes.pack import build_registry

    (tmp_path / "checkpoints").mkdir()
    shutil.copyfile(tiny_sd15_path, tmp_path / "checkpoints" / "tiny.safetensors")
    registry = build_registry(ModelPaths(tmp_path), tmp_path)
    env = Environment(tmp_path / "out", tmp_path / "tmp", tmp_path, model_store, ModelPaths(tmp_path))
    checked = validate_prompt(tiny_preview_txt2img(8), registry, env=env)
    assert checked.ok, checked.node_errors
    stamped: list[tuple[float, Event]] = []
    slow = 0.5

    def sink(event: Event) -> None:
        stamped.append((time.perf_counter(), event))
        if isinstance(event, PreviewImage):
            time.sleep(slow)  # a consumer that takes far longer than a step

    result = Executor(registry, env).execute(
        checked.prompt, prompt_id="p", outputs=checked.outputs, sink=sink, extra_data={}
    )
    assert result.status == "success", result.error and result.error.data()
    steps = [t for t, e in stamped if isinstance(e, Progress) and e.node == "3"]
    assert len(steps) == 8
    gaps = [b - a for a, b in zip(steps, steps[1:], strict=False)]
    assert max(gaps) < slow, gaps  # a step never waited for the consumer
    # The sampler's previews are all out before the next node starts (the last step's among them).
    kinds = [
        "preview" if isinstance(e, PreviewImage) else "next"
        for _, e in stamped
        if isinstance(e, PreviewImage) or (isinstance(e, Executing) and e.node == "8")
    ]
    assert kinds[-1] == "next" and "preview" in kinds and "preview" not in kinds[kinds.index("next") :]
