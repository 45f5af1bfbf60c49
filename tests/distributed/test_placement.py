"""Cache-aware placement and output naming: pure functions, no cluster."""

from __future__ import annotations

from pathlib import Path

import pytest

from diffgraph.distributed import placement
from diffgraph.distributed.outputs import FileRecord, OutputCommitter, rename_ui
from tests.stub_pack.txt2img import txt2img_prompt


def variant(ckpt: str, seed: int) -> dict:
    prompt = txt2img_prompt(ckpt)
    prompt["3"]["inputs"]["seed"] = seed
    return prompt


def test_placement_keys_keep_shared_upstream_work_only():
    keys = placement.shared_keys([variant("a", 1), variant("a", 2), variant("b", 3)])
    # a-items share loader, both encoders, latent; the b-item shares only the empty latent.
    assert len(keys[0]) == 4 and keys[0] == keys[1]
    assert len(keys[2]) == 1 and keys[2] < keys[0]


def test_placement_sends_items_to_the_worker_holding_their_model():
    prompts = [variant("a", 1), variant("b", 2), variant("a", 3), variant("b", 4)]
    keys = placement.shared_keys(prompts)
    # w1 ran an a-item: of the rest it takes the other a-item; an idle w2 prefers b while w1 holds a.
    assert placement.choose([keys[1], keys[2], keys[3]], set(keys[0]), set()) == 1
    assert placement.choose([keys[1], keys[2], keys[3]], set(), set(keys[0])) == 0


def test_output_committer_numbers_files_as_a_local_run(tmp_path: Path):
    (tmp_path / "ComfyUI_00004_.png").write_bytes(b"old")
    committer = OutputCommitter(tmp_path)
    first = committer.commit(
        [
            FileRecord("output", "", "ComfyUI_00002_.png", b"2"),
            FileRecord("output", "", "ComfyUI_00001_.png", b"1"),
        ]
    )
    assert {a[2]: p.name for a, p in first.items()} == {
        "ComfyUI_00001_.png": "ComfyUI_00005_.png",
        "ComfyUI_00002_.png": "ComfyUI_00006_.png",
    }
    assert (tmp_path / "ComfyUI_00005_.png").read_bytes() == b"1"
    sub = committer.commit([FileRecord("output", "cats", "cat_00001_.png", b"c")])
    assert sub[("output", "cats", "cat_00001_.png")] == tmp_path / "cats" / "cat_00001_.png"
    ui = {"images": [{"filename": "ComfyUI_00001_.png", "subfolder": "", "type": "output"}]}
    renamed = rename_ui(ui, {a: p.name for a, p in first.items()})
    assert renamed["images"][0]["filename"] == "ComfyUI_00005_.png" and ui["images"][0]["filename"].endswith(
        "1_.png"
    )


def test_output_committer_refuses_paths_outside_its_folder(tmp_path: Path):
    committer = OutputCommitter(tmp_path / "out")
    with pytest.raises(ValueError, match="outside"):
        committer.commit([FileRecord("output", "../escape", "x_00001_.png", b"x")])
    assert not (tmp_path / "escape").exists()
