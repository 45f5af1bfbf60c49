"""The builtin pack's registry: every builtin node, plus the packs installed through entry points."""

from __future__ import annotations

from engine import Input, ModelPaths, Node, NodeInputs, NodeOutputs
from nodes import pack


class ThirdPartyNode(Node):
    """A node an installed pack adds."""

    class_type = "ThirdPartyNode"
    display_name = "Third party"
    category = "testing"

    class Inputs(NodeInputs):
        value: int = Input(1, description="any number")

    class Outputs(NodeOutputs):
        pass

    def run(self, ctx, inputs):
        return self.Outputs()


class _EntryPoint:
    def __init__(self, target):
        self.target = target

    def load(self):
        return self.target


def test_pack_registry_includes_installed_packs(tmp_path, monkeypatch):
    installed = [_EntryPoint(pack.register), _EntryPoint(lambda registry: registry.register(ThirdPartyNode))]
    monkeypatch.setattr("engine.registry.entry_points", lambda group: installed)
    registry = pack.build_registry(ModelPaths(tmp_path / "models"), tmp_path / "input")
    assert "ThirdPartyNode" in registry
    assert "KSampler" in registry
