"""Tokenizer ids against the reference CLIP tokenizer's vectors and ComfyUI's prompt windows."""

from __future__ import annotations

import pytest

from nodes.diffusion.text_encode import parse_weights, windows
from nodes.diffusion.tokenizer import encode

CASES = [
    (
        "a photorealistic painting of a red dragon",
        [49406, 320, 1153, 16157, 3086, 539, 320, 736, 5471, 49407],
    ),
    ("café déjà vu — 42%!", [49406, 15304, 25466, 73, 21259, 13230, 2005, 275, 273, 35070, 49407]),
    (
        "Кошка в шляпе",
        [
            49406,
            27152,
            13506,
            141,
            230,
            27152,
            27080,
            140,
            366,
            141,
            230,
            47611,
            141,
            237,
            26302,
            140,
            369,
            49407,
        ],
    ),
]


@pytest.mark.parametrize(("text", "ids"), CASES)
def test_tokenizer_matches_reference_ids(text, ids):
    assert encode(text) == ids


def test_tokenizer_corpus_is_case_and_space_insensitive():
    assert encode("A  Photo\tOF a Cat") == encode("a photo of a cat")
    assert encode("") == [49406, 49407]


def test_tokenizer_per_word_equals_whole_text():
    text = "a photo of a cat sitting on a windowsill, highly detailed"
    per_word = [t for w in text.split(" ") for t in encode(w)[1:-1]]
    assert per_word == encode(text)[1:-1]


def test_emphasis_parsing_follows_comfyui_rules():
    pairs = dict((s, round(w, 4)) for s, w in parse_weights("a (red:1.3) ((cat)) [dog] (b:x)"))
    assert pairs["red"] == 1.3
    assert pairs["cat"] == 1.21
    assert pairs["b:x"] == 1.1
    assert pairs[" [dog] "] == 1.0


def test_escaped_parentheses_are_literal_text():
    win = windows(r"\(cat\)", 49407)[0]
    assert [t for t, _ in win[1:4]] == encode("(cat)")[1:4]
    assert all(w == 1.0 for _, w in win)


def test_long_prompt_splits_into_77_token_windows_at_word_boundaries():
    wins = windows("cat " * 100, 49407)
    assert [len(w) for w in wins] == [77, 77]
    assert wins[0][0][0] == 49406 and wins[0][76][0] == 49407
    assert sum(1 for t, _ in wins[0] + wins[1] if t == encode("cat")[1]) == 100


def test_sdxl_bigg_pads_with_zero():
    win = windows("cat", 0)[0]
    assert [t for t, _ in win[:4]] == [49406, encode("cat")[1], 49407, 0]
