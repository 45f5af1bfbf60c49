"""The Python API: Session.load / Workflow.set / Session.run with typed outputs and a shared cache."""

from __future__ import annotations

import json

import pytest

import diffgraph
from engine.formats.ui_workflow import api_to_ui
from tests.stub_pack import txt2img


@pytest.fixture
def session(project):
    with diffgraph.Session(
        models_dir=project / "models",
        output_dir=project / "out",
        registry_factory=txt2img.stub_registry_factory,
    ) as session:
        yield session


def test_session_run_returns_typed_outputs_and_files(session):
    wf = session.load("workflow.json").set("KSampler", "seed", 5)
    wf["Positive"].inputs["text"] = "a heron"
    result = session.run(wf)
    assert result.ok
    latent = result.outputs["3"].latent
    assert isinstance(latent, txt2img.StubLatent)
    assert (latent.value["seed"], latent.value["positive"]) == (5, "a heron")
    assert result.ui["9"]["images"][0]["type"] == "output"
    (path,) = result.all_files()
    assert path.parent == session.env.output_dir and json.loads(path.read_text())["seed"] == 5


def test_session_keeps_the_cache_across_runs(session):
    wf = session.load("workflow.json")
    first = session.run(wf)
    second = session.run(wf.copy().set("3", "seed", 6))
    assert len(first.executed) == 7
    assert sorted(second.executed) == ["3", "8", "9"]
    assert txt2img.CALLS.count("CheckpointLoaderSimple") == 1
    assert session.run(wf, force=True).executed == first.executed


def test_session_errors_are_raised_with_details(session):
    wf = session.load("workflow.json")
    with pytest.raises(diffgraph.WorkflowInvalid) as invalid:
        session.run(wf.copy().set("KSampler", "steps", 0))
    assert "3" in invalid.value.node_errors
    with pytest.raises(diffgraph.RunFailed) as failed:
        session.run(wf.copy().set("KSampler", "seed", 666))
    assert "node #3 (KSampler)" in str(failed.value) and failed.value.result.status == "error"
    assert session.run(wf.copy().set("KSampler", "seed", 666), raise_on_error=False).status == "error"


def test_workflow_refs_by_id_title_and_class_type(session):
    wf = session.load("workflow.json")
    assert wf["4"].class_type == "CheckpointLoaderSimple"
    assert wf["Load Checkpoint"].id == "4"
    assert wf["KSampler"].id == "3"
    with pytest.raises(diffgraph.NodeRefError, match="matches 2 nodes"):
        wf["CLIPTextEncode"]
    with pytest.raises(diffgraph.OverrideError, match="its inputs: text, clip"):
        wf.set("Positive", "txt", "x")


def test_session_load_scans_model_folders_only_for_ui_workflows(session, monkeypatch):
    scans = []
    scan = session.registry.choices
    monkeypatch.setattr(session.registry, "choices", lambda source: scans.append(source) or scan(source))
    for _ in range(3):
        session.load("workflow.json")
    assert scans == [], "loading an API prompt built the node schemas"
    ui = api_to_ui(session.load("workflow.json").prompt, session.registry.object_info())
    scans.clear()
    assert session.load(ui).prompt["3"]["class_type"] == "KSampler"
    assert scans, "a UI workflow is converted with the node schemas"
