"""`diffgraph run` on stub nodes: overrides, sweeps reusing the cache, batches, exit codes, --json."""

from __future__ import annotations

import json
from pathlib import Path

from tests.stub_pack import txt2img

ALL_NODES = {"3", "4", "5", "6", "7", "8", "9"}


def saved(path: str) -> dict:
    """What the stub SaveImage wrote: every upstream value that reached the image."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def test_run_writes_output_and_exits_zero(cli):
    result = cli("run", "workflow.json")
    assert result.code == 0, result.err
    files = result.out.split()
    assert len(files) == 1 and Path(files[0]).is_file()
    assert Path(files[0]).parent == Path("output")
    assert saved(files[0])["seed"] == 42


def test_run_set_by_id_title_and_class_type(cli):
    result = cli(
        "run",
        "workflow.json",
        "--set",
        "3.steps=2",
        "--set",
        "Positive.text=a dog",
        "--set",
        "KSampler.cfg=3.5",
        "--set",
        "EmptyLatentImage.width=128",
        "--json",
    )
    assert result.code == 0, result.err
    image = saved(result.json()["items"][0]["files"][0])
    assert (image["steps"], image["positive"], image["cfg"], image["w"]) == (2, "a dog", 3.5, 128)


def test_run_set_value_is_string_when_not_json(cli):
    result = cli("run", "workflow.json", "--set", "Negative.text=ugly, blurry", "--json")
    assert result.code == 0, result.err
    assert saved(result.json()["items"][0]["files"][0])["negative"] == "ugly, blurry"


def test_run_set_ambiguous_class_type_lists_candidates(cli):
    result = cli("run", "workflow.json", "--set", "CLIPTextEncode.text=x")
    assert result.code == 2
    assert "#6 CLIPTextEncode 'Positive'" in result.err and "#7 CLIPTextEncode 'Negative'" in result.err
    assert not Path("output").exists()


def test_run_set_unknown_node_and_input_are_named(cli):
    unknown_node = cli("run", "workflow.json", "--set", "Sampler.seed=1")
    assert (
        unknown_node.code == 2
        and "no node 'Sampler'" in unknown_node.err
        and "#3 KSampler" in unknown_node.err
    )
    unknown_input = cli("run", "workflow.json", "--set", "KSampler.sead=1")
    assert unknown_input.code == 2 and "no input 'sead'" in unknown_input.err and "seed" in unknown_input.err
    linked = cli("run", "workflow.json", "--set", "KSampler.model=1")
    assert linked.code == 2 and "linked to node #4" in linked.err


def test_run_seed_sweep_runs_only_sampler_decode_save_per_seed(cli):
    result = cli("run", "workflow.json", "--seeds", "1-20", "--json")
    assert result.code == 0, result.err
    items = result.json()["items"]
    assert [i["seed"] for i in items] == list(range(1, 21))
    assert set(items[0]["executed"]) == ALL_NODES
    for item in items[1:]:
        assert sorted(item["executed_class_types"].values()) == ["KSampler", "SaveImage", "VAEDecode"]
        assert set(item["cached"]) == {"4", "5", "6", "7"}
        assert item["cached_class_types"]["4"] == "CheckpointLoaderSimple"
    assert txt2img.CALLS.count("CheckpointLoaderSimple") == 1
    assert txt2img.CALLS.count("CLIPTextEncode") == 2
    assert [saved(i["files"][0])["seed"] for i in items] == list(range(1, 21))
    assert len(list(Path("output").iterdir())) == 20


def test_run_seed_input_names_the_swept_input(cli):
    result = cli("run", "workflow.json", "--seeds", "5,7", "--seed-input", "KSampler.steps", "--json")
    assert result.code == 0, result.err
    assert [saved(i["files"][0])["steps"] for i in result.json()["items"]] == [5, 7]


def test_run_force_reruns_every_node(cli):
    result = cli("run", "workflow.json", "--seeds", "1-2", "--force", "--json")
    assert result.code == 0, result.err
    assert [set(i["executed"]) for i in result.json()["items"]] == [ALL_NODES, ALL_NODES]


def test_run_batch_jsonl_reports_bad_lines_and_goes_on(cli, project):
    (project / "batch.jsonl").write_text(
        "\n".join(
            [
                '{"KSampler.seed": 1, "Positive.text": "a fox"}',
                '{"KSampler.seed": 2,',
                '{"Nope.seed": 3}',
                "",
                '{"KSampler": {"seed": 4, "steps": 2}}',
                '{"KSampler.seed": 666}',
            ]
        ),
        encoding="utf-8",
    )
    result = cli("run", "workflow.json", "--batch", "batch.jsonl", "--json")
    assert result.code == 1
    doc = result.json()
    statuses = [(i["line"], i["status"]) for i in doc["items"]]
    assert statuses == [(1, "success"), (2, "invalid"), (3, "invalid"), (5, "success"), (6, "error")]
    assert doc["summary"] == {**doc["summary"], "items": 5, "succeeded": 2, "failed": 3}
    assert "line 2: not valid JSON" in result.err
    assert "line 3: no node 'Nope'" in result.err
    assert "node #3 (KSampler): unlucky seed 666" in result.err
    assert saved(doc["items"][3]["files"][0])["steps"] == 2


def test_run_batch_csv_with_seed_sweep(cli, project):
    (project / "batch.csv").write_text(
        'Positive.text,KSampler.cfg\n"a cat, sitting",4\na dog,\nbad\n', encoding="utf-8"
    )
    result = cli("run", "workflow.json", "--batch", "batch.csv", "--seeds", "1-2", "--json")
    assert result.code == 1
    items = result.json()["items"]
    assert [(i["line"], i["seed"], i["status"]) for i in items] == [
        (2, 1, "success"),
        (2, 2, "success"),
        (3, 1, "success"),
        (3, 2, "success"),
        (4, 1, "invalid"),
        (4, 2, "invalid"),
    ]
    first, third = saved(items[0]["files"][0]), saved(items[2]["files"][0])
    assert (first["positive"], first["cfg"]) == ("a cat, sitting", 4)
    assert (third["positive"], third["cfg"]) == ("a dog", 7.0)
    assert "line 4: has 1 cells, the header has 2" in result.err


def test_run_node_failure_exits_one_with_the_node_error(cli):
    result = cli("run", "workflow.json", "--set", "KSampler.seed=666")
    assert result.code == 1
    assert "node #3 (KSampler): unlucky seed 666; pick another seed" in result.err


def test_run_invalid_workflow_exits_two_naming_node_and_input(cli):
    result = cli("run", "workflow.json", "--set", "KSampler.steps=0")
    assert result.code == 2
    assert "#3 KSampler" in result.err and "steps" in result.err
    assert txt2img.CALLS == []


def test_run_missing_checkpoint_hints_at_models_folder_and_demo(cli):
    result = cli("run", "workflow.json", "--set", "4.ckpt_name=v1-5-pruned-emaonly.safetensors")
    assert result.code == 2
    assert "ckpt_name" in result.err and "--demo" in result.err
    assert str(Path("models") / "checkpoints") in result.err


def test_run_missing_workflow_file_is_a_clear_error(cli):
    result = cli("run", "nope.json")
    assert result.code == 2 and "nope.json" in result.err


def test_run_json_schema(cli):
    result = cli("run", "workflow.json", "--json")
    doc = result.json()
    assert set(doc) == {
        "schema",
        "workflow",
        "status",
        "summary",
        "demo_checkpoint",
        "demo_resized",
        "items",
    }
    assert doc["demo_checkpoint"] == {} and doc["demo_resized"] == {}
    assert doc["status"] == "success" and doc["workflow"] == "workflow.json"
    assert set(doc["summary"]) == {"items", "succeeded", "failed", "not_run", "seconds"}
    item = doc["items"][0]
    assert set(item) >= {
        "index",
        "label",
        "line",
        "seed",
        "overrides",
        "status",
        "prompt_id",
        "outputs",
        "files",
        "executed",
        "cached",
        "executed_class_types",
        "cached_class_types",
        "timings",
        "node_errors",
        "error",
    }
    assert item["outputs"]["9"]["class_type"] == "SaveImage"
    assert item["outputs"]["9"]["files"] == item["files"]
    assert item["outputs"]["9"]["ui"]["images"][0]["type"] == "output"
    assert set(item["timings"]["nodes"]) == ALL_NODES and item["timings"]["total_s"] > 0


def test_run_plain_progress_lines_when_not_a_terminal(cli):
    result = cli("run", "workflow.json", "--seeds", "1-2")
    assert "running #3 KSampler" in result.err
    assert "step 4/4" in result.err
    assert "[2/2 seed 2] cached: #4 CheckpointLoaderSimple" in result.err
    assert "2 items: 2 succeeded, 0 failed" in result.err


def test_run_out_and_models_dir_options(cli, project, monkeypatch):
    (project / "elsewhere" / "checkpoints").mkdir(parents=True)
    (project / "elsewhere" / "checkpoints" / "other.safetensors").write_bytes(b"stub")
    args = ("run", "workflow.json", "--set", "4.ckpt_name=other.safetensors", "--out", "results")
    assert cli(*args, "--models-dir", "elsewhere").code == 0
    assert len(list((project / "results").iterdir())) == 1
    monkeypatch.setenv("DIFFGRAPH_MODELS_DIR", str(project / "elsewhere"))
    assert cli(*args).code == 0


def test_run_rich_progress_bars_draw_a_whole_sweep(cli):
    result = cli("run", "workflow.json", "--seeds", "1-3", "--progress", "rich")
    assert result.code == 0, result.err
    assert len(result.out.split()) == 3
    assert "item 3/3: seed 3" in result.err and "7/7" in result.err and "3 items: 3 succeeded" in result.err


def test_run_set_values_are_parsed_by_the_input_type(cli):
    result = cli(
        "run",
        "workflow.json",
        "--set",
        "Positive.text=42",
        "--set",
        "Negative.text=true",
        "--set",
        "KSampler.cfg=4",
        "--set",
        "KSampler.sampler_name=dpmpp_2m",
        "--json",
    )
    assert result.code == 0, result.err
    image = saved(result.json()["items"][0]["files"][0])
    assert (image["positive"], image["negative"], image["cfg"]) == ("42", "true", 4.0)


def test_run_set_bad_number_is_reported_with_node_and_input(cli):
    result = cli("run", "workflow.json", "--set", "KSampler.steps=many")
    assert result.code == 2
    assert "#3 KSampler" in result.err and "steps" in result.err and "many" in result.err
    assert txt2img.CALLS == []


def test_run_json_reports_a_run_that_cannot_start(cli):
    result = cli("run", "nope.json", "--json")
    assert result.code == 2
    doc = result.json()
    assert doc["status"] == "invalid" and doc["items"] == []
    assert doc["error"]["type"] == "workflow_not_found" and "nope.json" in doc["error"]["message"]


def two_sampler_workflow(project: Path) -> str:
    (project / "two.json").write_text(json.dumps(txt2img.two_sampler_prompt()), encoding="utf-8")
    return "two.json"


def test_run_seed_sweep_sets_every_sampler_noise_seed(cli, project):
    result = cli("run", two_sampler_workflow(project), "--seeds", "5,9", "--json")
    assert result.code == 0, result.err
    items = result.json()["items"]
    assert [saved(i["files"][0])["seeds"] for i in items] == [[5, 5], [9, 9]]
    assert sorted(items[1]["executed_class_types"].values()) == [
        "KSamplerAdvanced",
        "KSamplerAdvanced",
        "SaveImage",
        "VAEDecode",
    ]


def test_run_seed_input_sweeps_one_chosen_sampler(cli, project):
    workflow = two_sampler_workflow(project)
    result = cli("run", workflow, "--seeds", "5-6", "--seed-input", "Second pass.noise_seed", "--json")
    assert result.code == 0, result.err
    items = result.json()["items"]
    assert [saved(i["files"][0])["seeds"] for i in items] == [[1, 5], [1, 6]]
    assert "10" in items[1]["cached"]  # the first pass kept its seed, so it comes from the cache


def test_run_seeds_on_a_workflow_without_seeds_says_what_to_do(cli, project):
    prompt = txt2img.txt2img_prompt()
    prompt["3"]["inputs"]["seed"] = ["5", 0]  # a linked seed is not a constant the sweep can set
    (project / "linked.json").write_text(json.dumps(prompt), encoding="utf-8")
    result = cli("run", "linked.json", "--seeds", "1-3")
    assert result.code == 2 and "--seed-input" in result.err


def test_run_ctrl_c_cancels_the_running_node_and_stops_the_batch(cli):
    result = cli("run", "workflow.json", "--seeds", "1,130,2", "--json")
    assert result.code == 130
    items = result.json()["items"]
    assert [(i["seed"], i["status"]) for i in items] == [(1, "success"), (130, "interrupted")]
    assert result.json()["summary"] == {**result.json()["summary"], "succeeded": 1, "failed": 1, "not_run": 1}
    assert "interrupted (Ctrl-C)" in result.err and "3 items: 1 succeeded, 1 failed, 1 not run" in result.err
