"""Fixtures for CLI tests: a project folder with models/, a txt2img workflow, and the CLI on stub nodes."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from diffgraph.cli import main
from tests.stub_pack import txt2img


@dataclass
class CliResult:
    """Exit code and captured streams of one CLI call."""

    code: int
    out: str
    err: str

    def json(self) -> Any:
        """stdout parsed as JSON."""
        return json.loads(self.out)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with models/checkpoints/tiny.safetensors and workflow.json (txt2img)."""
    (tmp_path / "models" / "checkpoints").mkdir(parents=True)
    (tmp_path / "models" / "checkpoints" / "tiny.safetensors").write_bytes(b"stub")
    (tmp_path / "workflow.json").write_text(json.dumps(txt2img.txt2img_prompt()), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DIFFGRAPH_MODELS_DIR", raising=False)
    txt2img.CALLS.clear()
    return tmp_path


@pytest.fixture
def cli(project: Path, capsys: pytest.CaptureFixture[str]):
    """Run `diffgraph ARGS...` on the stub nodes inside the project folder."""

    def run(*args: str) -> CliResult:
        capsys.readouterr()
        code = main(list(args), registry_factory=txt2img.stub_registry_factory)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run
