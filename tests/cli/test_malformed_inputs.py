"""Malformed workflow files: `run` exits 2 with a message (never a traceback); `validate` never crashes."""

from __future__ import annotations

import json
import struct
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st


def _png(chunks: dict[str, bytes]) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
    texts = b"".join(chunk(b"tEXt", k.encode("latin-1") + b"\0" + v) for k, v in chunks.items())
    pixels = chunk(b"IDAT", zlib.compress(b"\0\0\0\0"))
    return b"\x89PNG\r\n\x1a\n" + header + texts + pixels + chunk(b"IEND", b"")


CASES = {
    "utf16.json": json.dumps({"1": {"class_type": "X"}}).encode("utf-16"),
    "bad-utf8.json": b'{"1": "\xff\xfe"}',
    "deep.json": b"[" * 50_000 + b"]" * 50_000,
    "huge-int.json": b'{"1": {"class_type": "X", "inputs": {"seed": ' + b"9" * 5000 + b"}}}",
    "nan.json": b'{"1": {"class_type": "X", "inputs": {"a": NaN}}}',
    "list.json": b"[]",
    "number.json": b"5",
    "empty.json": b"",
    "node-is-number.json": b'{"1": 5}',
    "inputs-list.json": b'{"1": {"class_type": "X", "inputs": []}}',
    "wrapped-bad.json": b'{"prompt": {"1": 5}, "extra_data": 5}',
    "prompt-list.png": _png({"prompt": b"[]"}),
    "prompt-bad.png": _png({"prompt": b"{bad"}),
    "workflow-odd.png": _png({"workflow": b'{"nodes": 5}'}),
    "deep.png": _png({"prompt": b"[" * 5000 + b"]" * 5000}),
    "truncated.png": _png({"prompt": b"{}"})[:30],
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_run_malformed_workflow_exits_2_with_a_message(cli, project, name):
    (project / name).write_bytes(CASES[name])
    result = cli("run", name)
    assert result.code == 2, result.err
    assert result.err.startswith("error [") and "Traceback" not in result.err


@pytest.mark.parametrize("name", sorted(CASES))
def test_validate_malformed_workflow_reports_without_crashing(cli, project, name):
    (project / name).write_bytes(CASES[name])
    result = cli("validate", name)
    assert result.code in (1, 2) and result.err.strip()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
        max_leaves=12,
    )
)
def test_validate_generated_json_never_crashes(cli, project, data):
    (project / "gen.json").write_text(json.dumps(data), encoding="utf-8")
    result = cli("validate", "gen.json")
    assert result.code in (0, 1, 2)
