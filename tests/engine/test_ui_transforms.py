"""The client's queue-time rewrites as pure functions: edge cases read from the client's source."""

from __future__ import annotations

from datetime import datetime

import pytest

from engine.formats.ui_transforms import (
    ChoiceRandom,
    apply_text_replacements,
    js_json_value,
    js_string,
    pack_meta,
    process_dynamic_prompt,
    strip_comments,
)

NOW = datetime(2024, 3, 5, 7, 8, 9)


def first() -> float:
    return 0.0


def last() -> float:
    return 0.999


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a // b\nc", "a \nc"),
        ("see http://example.com/x", "see http:"),  # no URL exception: everything from // goes
        ("a /* b\nc */ d", "a  d"),
        ("a /* never closed", "a /* never closed"),
        ("x // y\u2028z", "x \u2028z"),
        ("x // y\r\nz", "x \r\nz"),
        ("a/b / /c", "a/b / /c"),
    ],
)
def test_strip_comments_follows_the_client(text, expected):
    assert strip_comments(text) == expected


@pytest.mark.parametrize(
    ("text", "rand", "expected"),
    [
        ("{a|b|c}", first, "a"),
        ("{a|b|c}", last, "c"),
        ("{a|{b|c}}", last, "c"),  # the chosen option's own groups are resolved afterwards
        ("{a|}", last, ""),
        ("\\{a\\|b\\}", first, "{a|b}"),
        ("{a|b", last, "b"),  # an unclosed group runs to the end
        ("end\\", first, "end\\undefined"),  # the client reads past the end of the text
        ("{a // b|c}\n", last, "a \n"),  # comments go before groups are seen
    ],
)
def test_process_dynamic_prompt_edge_cases(text, rand, expected):
    assert process_dynamic_prompt(text, rand) == expected


def test_process_dynamic_prompt_draws_outer_group_first():
    draws = iter([0.9, 0.0, 0.5])
    assert process_dynamic_prompt("{x|{p|q}} {m|n}", lambda: next(draws)) == "p n"


def test_choice_random_is_the_documented_park_miller_sequence():
    rand = ChoiceRandom(1)
    assert [round(rand() * 2147483647) for _ in range(3)] == [48271, 182605794, 1291394886]


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (8.0, "8"),
        (7.5, "7.5"),
        (1e21, "1e+21"),
        (1e-7, "1e-7"),
        (0.000001, "0.000001"),
        (True, "true"),
        (None, "null"),
        ([1, None, "a"], "1,,a"),
        (123456789012345680000.0, "123456789012345680000"),
    ],
)
def test_js_string_prints_like_javascript(value, text):
    assert js_string(value) == text


class Widgets:
    def widget_value(self, node_name, widget_name):
        values = {("KSampler", "seed"): 42, ("KSampler", "cfg"): 8.0, ("Text", "text"): 'a/b:c*"d"'}
        key = (node_name, widget_name)
        return (True, values[key]) if key in values else (False, None)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("%date:yyyy-MM-dd hh:mm:ss%", "2024-03-05 07:08:09"),
        ("%date:yy M d h m s%", "24 3 5 7 8 9"),
        ("%date:yy.MM.dd%", "24"),  # three dot-separated parts: a date formatted up to the first dot
        ("%date:yyyy.MM%", "%date:yyyy.MM%"),  # two parts: a node named "date:yyyy", not found
        ("%KSampler.seed%_%KSampler.cfg%", "42_8"),
        ("%Text.text%", "a_b_c__d_"),
        ("%width%_%Nope.x%_%KSampler.nope%", "%width%_%Nope.x%_%KSampler.nope%"),
    ],
)
def test_apply_text_replacements_follows_the_client(text, expected):
    assert apply_text_replacements(text, Widgets(), NOW) == expected


def test_pack_meta_keeps_only_valid_identities():
    assert pack_meta({"cnr_id": "comfy-core", "ver": "v0.3.64", "aux_id": "user/repo"}) == {
        "cnr_id": "comfy-core",
        "ver": "0.3.64",
        "aux_id": "user/repo",
    }
    assert pack_meta({"cnr_id": "-x", "ver": "1.2", "aux_id": "a--b/repo"}) == {}
    assert pack_meta({"ver": "unknown"}) == {"ver": "unknown"}
    assert pack_meta({"ver": "ABC123"}) == {"ver": "ABC123"}


def test_js_json_value_holds_numbers_as_the_client_does():
    assert js_json_value({"__value__": [20.0, 2**53 + 1, 2**64, 0.5, True, "8.0"]}) == {
        "__value__": [20, 2**53, 18446744073709552000, 0.5, True, "8.0"]
    }
    assert js_json_value(float("inf")) is None and js_json_value(10**400) is None
