"""Malformed safetensors headers: a clear error naming the file, before any tensor is allocated."""

from __future__ import annotations

import json
import struct

import pytest

from nodes.diffusion.checkpoint_io import CheckpointFormatError, read_safetensors, safetensors_metadata


def _file(tmp_path, header: object, data: bytes = b"", raw: bytes | None = None):
    body = raw if raw is not None else json.dumps(header).encode()
    path = tmp_path / "model.safetensors"
    path.write_bytes(struct.pack("<Q", len(body)) + body + data)
    return path


@pytest.mark.parametrize(
    "header",
    [
        # 2 TB claimed by the shape, with offsets to match: must be refused by size, not allocated.
        {"w": {"dtype": "F32", "shape": [1 << 20, 1 << 19], "data_offsets": [0, 1 << 41]}},
        {"w": {"dtype": "F32", "shape": [1 << 20, 1 << 19], "data_offsets": [0, 16]}},
        {"w": {"dtype": "F32", "shape": [-4], "data_offsets": [0, 16]}},
        {"w": {"dtype": "F32", "shape": [4], "data_offsets": [16, 0]}},
        {"w": {"dtype": "F32", "shape": [4], "data_offsets": [0]}},
        {"w": {"dtype": "F32", "shape": "4", "data_offsets": [0, 16]}},
        {"w": {"dtype": "X9", "shape": [4], "data_offsets": [0, 16]}},
        {"w": {"dtype": "F32", "shape": [4.0], "data_offsets": [0, 16]}},
        {"w": 5},
        [1, 2],
        {"__metadata__": {"a": 1}},
        {"__metadata__": [1]},
    ],
)
def test_read_safetensors_refuses_malformed_headers_naming_the_file(tmp_path, header):
    path = _file(tmp_path, header, b"\0" * 16)
    with pytest.raises(CheckpointFormatError, match="model.safetensors"):
        read_safetensors(path)


@pytest.mark.parametrize("raw", [b"{not json", b"[" * 10000, b"\xff\xfe"])
def test_read_safetensors_refuses_unparsable_headers(tmp_path, raw):
    with pytest.raises(CheckpointFormatError, match="model.safetensors"):
        safetensors_metadata(_file(tmp_path, None, raw=raw))


def test_read_safetensors_still_reads_a_valid_file(tmp_path):
    header = {"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "__metadata__": {"k": "v"}}
    path = _file(tmp_path, header, struct.pack("<2f", 1.0, 2.0))
    assert read_safetensors(path)["w"].tolist() == [1.0, 2.0]
    assert safetensors_metadata(path) == {"k": "v"}
