"""Seed ranges and batch-file parsing."""

from __future__ import annotations

import pytest

from diffgraph.sweep import SweepError, build_items, parse_seeds, read_csv, read_json_lines
from diffgraph.workflow import OverrideError, parse_assignment, parse_value


def test_parse_seeds_ranges_and_lists():
    assert parse_seeds("1-3,7,10-11") == [1, 2, 3, 7, 10, 11]
    for bad in ("3-1", "a-b", "1-", ""):
        with pytest.raises(SweepError):
            parse_seeds(bad)


def test_parse_assignment_splits_titles_with_dots_at_the_last_dot():
    assert parse_assignment("v1.5 loader.ckpt_name=x.safetensors") == (
        "v1.5 loader",
        "ckpt_name",
        "x.safetensors",
    )
    assert parse_assignment("3.cfg=7.5") == ("3", "cfg", "7.5")
    assert parse_assignment("6.text=a=b") == ("6", "text", "a=b")


def test_parse_value_follows_the_input_type():
    assert parse_value("42", "STRING") == "42" and parse_value('"quoted"', "STRING") == "quoted"
    assert parse_value("true", "STRING") == "true" and parse_value("[1]", "COMBO") == "[1]"
    assert parse_value("7", "INT") == 7 and parse_value("7.5", "FLOAT") == 7.5
    assert [parse_value(t, "BOOLEAN") for t in ("true", "False", "yes", "off", "1")] == [
        True,
        False,
        True,
        False,
        True,
    ]
    with pytest.raises(OverrideError, match="not a boolean"):
        parse_value("maybe", "BOOLEAN")
    # Unknown input type: JSON when it parses, else the text.
    assert [parse_value(t) for t in ("5", "2.5", "true", "[1, 2]", '{"a": 1}', "a cat")] == [
        5,
        2.5,
        True,
        [1, 2],
        {"a": 1},
        "a cat",
    ]


def test_batch_readers_keep_line_numbers():
    lines = read_json_lines('# comment\n{"3.seed": 1}\n\n[1]\n{"KSampler": {"seed": 2}}\n')
    assert [(n, o, e is not None) for n, o, e in lines] == [
        (2, {"3.seed": 1}, False),
        (4, None, True),
        (5, {"KSampler.seed": 2}, False),
    ]
    rows = read_csv('3.seed,6.text\n1,"multi\nline"\n2,x\n')
    assert [(n, o) for n, o, _ in rows] == [
        (3, {"3.seed": "1", "6.text": "multi\nline"}),
        (4, {"3.seed": "2", "6.text": "x"}),
    ]


def test_build_items_crosses_lines_with_seeds():
    items = build_items({"3.steps": 2}, [(1, {"6.text": "a"}, None), (2, None, "bad")], [5, 6])
    assert [(i.line, i.seed, i.error) for i in items] == [
        (1, 5, None),
        (1, 6, None),
        (2, 5, "bad"),
        (2, 6, "bad"),
    ]
    assert items[0].overrides == {"3.steps": 2, "6.text": "a"} and items[0].label == "line 1, seed 5"
