"""The test packs' prompts give the events and outputs ComfyUI 0.3.64 gave (data/README.md says how)."""

from __future__ import annotations

import json
from pathlib import Path

from engine.executor import Executor
from engine.validation import validate_prompt

DATA = Path(__file__).parent / "data"
PROMPTS = json.loads((DATA / "comfyui_prompts.json").read_text(encoding="utf-8"))
REFERENCE = json.loads((DATA / "comfyui_events.json").read_text(encoding="utf-8"))
KEPT = {
    "execution_start",
    "execution_cached",
    "executing",
    "executed",
    "execution_error",
    "execution_success",
}


def normalised(event) -> list:
    kind, data = event.type, event.data()
    if kind == "executing":
        return [kind, data["node"], data["display_node"]]
    if kind == "executed":
        return [kind, data["node"], data["display_node"], data["output"]]
    if kind == "execution_cached":
        return [kind, sorted(data["nodes"])]
    if kind == "execution_error":
        return [kind, data["node_id"], data["exception_message"]]
    return [kind, data] if kind == "dg_test.shown" else [kind]


def canonical(event: list) -> str:
    return json.dumps(event, sort_keys=True)


def outputs_of(prompt: dict) -> list[str]:
    return [n for n, node in prompt.items() if node["class_type"].endswith("Show")]


def test_pack_prompts_match_comfyui_events_and_outputs(packs_env):
    registry, env = packs_env
    executor = Executor(registry, env)  # one cache for the whole sequence, as on the recording server
    for case, run in [(case, run) for case in PROMPTS for run in ("first", "second")]:
        name, prompt = case["name"], case["prompt"]
        checked = validate_prompt(prompt, registry, env=env)
        assert checked.ok, checked.node_errors
        events: list = []
        result = executor.execute(checked.prompt, prompt_id=name, outputs=checked.outputs, sink=events.append)
        ours = [normalised(e) for e in events if e.type in KEPT or e.type == "dg_test.shown"]
        theirs = REFERENCE[f"{name}/{run}"]
        assert result.ui_outputs == theirs["outputs"], f"{name}/{run}"
        if len(outputs_of(prompt)) == 1:
            assert ours == theirs["events"], f"{name}/{run}"
        else:
            assert sorted(map(canonical, ours)) == sorted(map(canonical, theirs["events"])), f"{name}/{run}"
