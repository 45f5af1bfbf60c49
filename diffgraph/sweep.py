"""Sweeps and batches: seed ranges and batch files (JSON lines or CSV) turned into run items."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from diffgraph.workflow import TextValue, split_target
from engine import DiffgraphError

MAX_SEEDS = 1_000_000


class SweepError(DiffgraphError):
    """A seed range or batch file that cannot be read at all."""

    code = "bad_sweep"


@dataclass
class Item:
    """One run of a batch: its overrides (`{"NODE.INPUT": value}`), seed, and where it came from."""

    index: int
    overrides: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    line: int | None = None
    error: str | None = None  # set when the batch line could not be read; the item fails, the batch goes on

    @property
    def label(self) -> str:
        """A short human name: `line 3, seed 5`."""
        parts = []
        if self.line is not None:
            parts.append(f"line {self.line}")
        if self.seed is not None:
            parts.append(f"seed {self.seed}")
        return ", ".join(parts) or f"item {self.index + 1}"


def parse_seeds(text: str) -> list[int]:
    """`5`, `1-100`, `1,3,10-12` -> the seeds in order (ranges are inclusive)."""
    seeds: list[int] = []
    for part in text.split(","):
        part = part.strip()
        low, dash, high = part.partition("-")
        try:
            start = int(low)
            end = int(high) if dash else start
        except ValueError:
            raise SweepError(f"--seeds {text!r}: {part!r} is not N or N-M (for example 1-100)") from None
        if end < start:
            raise SweepError(f"--seeds {text!r}: range {part!r} runs backwards")
        if len(seeds) + end - start + 1 > MAX_SEEDS:
            raise SweepError(f"--seeds {text!r} asks for more than {MAX_SEEDS} runs")
        seeds.extend(range(start, end + 1))
    return seeds


def overrides_from_object(data: Any) -> dict[str, Any]:
    """A batch entry `{"NODE.INPUT": value}` or `{"NODE": {"INPUT": value}}` as flat overrides."""
    if not isinstance(data, dict):
        raise SweepError(f"expected a JSON object of NODE.INPUT keys, got {type(data).__name__}")
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and "." not in key:
            for input_name, inner in value.items():
                flat[f"{key}.{input_name}"] = inner
        else:
            split_target(key)
            flat[key] = value
    return flat


def read_json_lines(text: str) -> list[tuple[int, dict[str, Any] | None, str | None]]:
    """(line number, overrides or None, error or None) per non-blank, non-`#` line."""
    entries: list[tuple[int, dict[str, Any] | None, str | None]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            entries.append((number, overrides_from_object(json.loads(line)), None))
        except json.JSONDecodeError as exc:
            entries.append((number, None, f"not valid JSON: {exc.msg} at column {exc.colno}"))
        except DiffgraphError as exc:
            entries.append((number, None, exc.message))
    return entries


def read_csv(text: str) -> list[tuple[int, dict[str, Any] | None, str | None]]:
    """A header row of NODE.INPUT columns, then one override set per row; empty cells set nothing.

    Cells stay text until applied, then each is parsed by its input's type (a STRING keeps `42`).
    """
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if not header:
        raise SweepError("the CSV batch file is empty; its first row names the NODE.INPUT columns")
    columns = [name.strip() for name in header]
    for name in columns:
        try:
            split_target(name)
        except DiffgraphError as exc:
            raise SweepError(f"CSV header, line 1: {exc.message}") from None
    entries: list[tuple[int, dict[str, Any] | None, str | None]] = []
    for row in reader:
        number = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(columns):
            entries.append((number, None, f"has {len(row)} cells, the header has {len(columns)}"))
            continue
        entries.append(
            (
                number,
                {col: TextValue(cell) for col, cell in zip(columns, row, strict=True) if cell != ""},
                None,
            )
        )
    return entries


def read_batch(path: str | Path) -> list[tuple[int, dict[str, Any] | None, str | None]]:
    """Read a batch file: `.csv` as CSV, anything else as JSON lines."""
    path = Path(path)
    if not path.is_file():
        raise SweepError(f"batch file {path} does not exist")
    text = path.read_text(encoding="utf-8")
    return read_csv(text) if path.suffix.lower() == ".csv" else read_json_lines(text)


def build_items(
    base: dict[str, Any],
    batch: Sequence[tuple[int | None, dict[str, Any] | None, str | None]] | None,
    seeds: list[int] | None,
) -> list[Item]:
    """Every batch line times every seed (either may be absent); `base` (--set) applies to all."""
    lines: Sequence[tuple[int | None, dict[str, Any] | None, str | None]] = (
        batch if batch is not None else [(None, {}, None)]
    )
    items: list[Item] = []
    for number, overrides, error in lines:
        for seed in seeds if seeds else [None]:
            merged = {**base, **(overrides or {})}
            items.append(Item(index=len(items), overrides=merged, seed=seed, line=number, error=error))
    return items
