"""A1111's prompt syntax is read exactly as A1111 1.10 reads it (expected values follow its code and doctests)."""

from __future__ import annotations

import pytest

from core.errors import UserError
from core.prompt_syntax import (
    BREAK,
    ExtraNetworkTag,
    extract_extra_networks,
    lora_multipliers,
    parse_prompt_attention,
    prompt_schedule,
)

UP = 1.1
DOWN = 1 / 1.1

# Weights are written as A1111 computes them, starting at 1.0 and multiplying as each bracket closes, so equality is
# exact (1.0 * 1.1 * 1.1 == 1.2100000000000002, not 1.21).
ATTENTION_CASES = {
    "": [("", 1.0)],
    "normal text": [("normal text", 1.0)],
    "an (important) word": [("an ", 1.0), ("important", UP), (" word", 1.0)],
    "((a))": [("a", 1.0 * UP * UP)],
    "(((a)))": [("a", 1.0 * UP * UP * UP)],
    "[a]": [("a", 1.0 * DOWN)],
    "[[a]] b": [("a", 1.0 * DOWN * DOWN), (" b", 1.0)],
    "(a:1.3)": [("a", 1.3)],
    "(a:0.5) b": [("a", 0.5), (" b", 1.0)],
    "(a: 1.3 )": [("a", 1.3)],  # 1.10's scanner allows spaces around the weight
    "(a:.5)": [("a", 0.5)],
    "(a:-1)": [("a", -1.0)],
    "((a:1.3))": [("a", 1.0 * 1.3 * UP)],
    "([a:0.5])": [("a:0.5", 1.0 * DOWN * UP)],  # "[a:0.5]" is no weight: ":0.5" is text, the [] divide by 1.1
    "[a:0.5]": [("a:0.5", 1.0 * DOWN)],
    "(a [b] c)": [("a ", UP), ("b", 1.0 * DOWN * UP), (" c", UP)],
    "(unnecessary)(parens)": [("unnecessaryparens", UP)],
    # A1111's own doctest.
    "a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).": [
        ("a ", 1.0),
        ("house", 1.5730000000000004),
        (" ", 1.1),
        ("on", 1.0),
        (" a ", 1.1),
        ("hill", 0.55),
        (", sun, ", 1.1),
        ("sky", 1.4641000000000006),
        (".", 1.1),
    ],
}

ESCAPE_CASES = {
    r"\(literal\]": [("(literal]", 1.0)],
    r"\((a)\)": [("(", 1.0), ("a", UP), (")", 1.0)],
    r"a\\b": [("a\\b", 1.0)],
    r"a\b": [("ab", 1.0)],  # a lone backslash is dropped, as A1111's scanner does
    r"(a\)b)": [("a)b", UP)],
    r"a\:1.2)": [("a:1.2)", 1.0)],
}

UNBALANCED_CASES = {
    "(unbalanced": [("unbalanced", UP)],
    "a (b": [("a ", 1.0), ("b", UP)],
    "[a": [("a", 1.0 * DOWN)],
    "a) b] c": [("a) b] c", 1.0)],  # stray closers are literal text
    "a:1.2) b": [("a:1.2) b", 1.0)],  # a weight closer with no "(" is text too
    "(a(b": [("a", 1.0 * UP), ("b", 1.0 * UP * UP)],  # each open "(" weights everything after it
    # Unclosed round brackets are applied before unclosed square ones, whatever the typing order.
    "(a[b)": [("a", 1.0 * UP), ("b", 1.0 * UP * DOWN)],
    "[a(b": [("a", 1.0 * DOWN), ("b", 1.0 * UP * DOWN)],
    "((a)": [("a", 1.0 * UP * UP)],
    ")(": [(")", 1.0)],
    "(": [("", 1.0)],
    # A1111 crashes in float() here; we read ":1.2.3" as text inside the "(...)".
    "(a:1.2.3)": [("a:1.2.3", UP)],
    "(a:.)": [("a:.", UP)],
}

BREAK_CASES = {
    "a BREAK b": [("a", 1.0), (BREAK, -1.0), ("b", 1.0)],
    "a,BREAK,b": [("a,", 1.0), (BREAK, -1.0), (",b", 1.0)],  # word boundaries, not whitespace, delimit it
    "BREAK a": [("", 1.0), (BREAK, -1.0), ("a", 1.0)],
    "a\nBREAK\n(b)": [("a", 1.0), (BREAK, -1.0), ("", 1.0), ("b", UP)],
    "a BREAK BREAK b": [("a", 1.0), (BREAK, -1.0), ("", 1.0), (BREAK, -1.0), ("b", 1.0)],
    "BREAKfast BREAKING unBREAK": [("BREAKfast BREAKING unBREAK", 1.0)],
    "a break b": [("a break b", 1.0)],
    # Inside brackets the marker is multiplied like any piece, so it is no longer -1.0 (A1111 then encodes it as text).
    "(a BREAK b)": [("a", UP), (BREAK, -1.0 * UP), ("b", UP)],
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [*ATTENTION_CASES.items(), *ESCAPE_CASES.items(), *UNBALANCED_CASES.items(), *BREAK_CASES.items()],
)
def test_attention_matches_a1111(text, expected):
    assert parse_prompt_attention(text) == expected


def test_attention_weights_are_floats():
    assert all(type(weight) is float for _, weight in parse_prompt_attention("a BREAK (b:2) [c]"))


def alternating(n: int, options: list[str], steps: int = 10) -> list[tuple[int, str]]:
    return [(step, options[(step - 1) % n]) for step in range(1, steps + 1)]


# (prompt, steps, expected) — the first block is A1111's doctests (10 steps).
SCHEDULE_CASES = [
    ("test", 10, [(10, "test")]),
    ("a [b:3]", 10, [(3, "a "), (10, "a b")]),
    ("a [b: 3]", 10, [(3, "a "), (10, "a b")]),
    ("a [[[b]]:2]", 10, [(2, "a "), (10, "a [[b]]")]),
    ("[(a:2):3]", 10, [(3, ""), (10, "(a:2)")]),
    ("a [b : c : 1] d", 10, [(1, "a b  d"), (10, "a  c  d")]),
    ("a[b:[c:d:2]:1]e", 10, [(1, "abe"), (2, "ace"), (10, "ade")]),
    ("a [unbalanced", 10, [(10, "a [unbalanced")]),
    ("a [b:.5] c", 10, [(5, "a  c"), (10, "a b c")]),
    ("((a][:b:c [d:3]", 10, [(3, "((a][:b:c "), (10, "((a][:b:c d")]),
    ("[a|(b:1.1)]", 10, alternating(2, ["a", "(b:1.1)"])),
    ("[fe|]male", 10, alternating(2, ["female", "male"])),
    ("[fe|||]male", 10, alternating(4, ["female", "male", "male", "male"])),
    # Forms and numbers.
    ("a [cat:dog:4] b", 10, [(4, "a cat b"), (10, "a dog b")]),
    ("[cat::4]", 10, [(4, "cat"), (10, "")]),
    ("[cat:4 ]", 10, [(4, ""), (10, "cat")]),
    ("[a:b:0.25]", 30, [(7, "a"), (30, "b")]),  # 7.5 truncates to 7
    ("[a:b:0.29]", 100, [(28, "a"), (100, "b")]),  # 0.29 * 100 == 28.999999999999996 -> 28, exactly as A1111
    ("[a:b:1.0]", 20, [(20, "a")]),  # with a dot it is a fraction: 1.0 = the whole run
    ("[a:b:25]", 20, [(20, "a")]),  # past the last step: never switches
    ("[a:b:0]", 10, [(10, "b")]),
    ("[a:b:-3]", 10, [(10, "b")]),
    ("[a:b:0.05]", 10, [(10, "b")]),  # 0.5 of a step rounds down to 0
    ("[a:b:3][c:d:3]", 10, [(3, "ac"), (10, "bd")]),
    ("[a:b:7][c:d:3]", 10, [(3, "ac"), (7, "ad"), (10, "bd")]),
    # Nesting.
    ("[[a|b]:c:3]", 4, [(1, "a"), (2, "b"), (3, "a"), (4, "c")]),
    ("[a:[b:c:0.5]:2]", 10, [(2, "a"), (5, "b"), (10, "c")]),
    ("[a|b|c] x", 4, [(1, "a x"), (2, "b x"), (3, "c x"), (4, "a x")]),
    # Emphasis stays in the text, editing inside emphasis works.
    ("(cat:1.2) [dog:(wolf:1.3):4]", 10, [(4, "(cat:1.2) dog"), (10, "(cat:1.2) (wolf:1.3)")]),
    ("((a [b:c:2]))", 10, [(2, "((a b))"), (10, "((a c))")]),
    (r"\[a:b:2\]", 10, [(10, r"\[a:b:2\]")]),  # escaped brackets are text
    # The grammar cannot read these: the whole prompt is used literally, editing included.
    ("a | [b:3]", 10, [(10, "a | [b:3]")]),
    ("a [b|c", 10, [(10, "a [b|c")]),
    # A1111's doctest expects an edit here, but since "|" became alternation its grammar rejects it as well.
    ("a [{b|d{:.5] c", 10, [(10, "a [{b|d{:.5] c")]),
    # Brackets and colons the grammar reads as plain text, not editing.
    ("[a:b:c]", 10, [(10, "[a:b:c]")]),
    ("a: b (c) [d]", 10, [(10, "a: b (c) [d]")]),
]


@pytest.mark.parametrize(("prompt", "steps", "expected"), SCHEDULE_CASES)
def test_schedule_matches_a1111(prompt, steps, expected):
    assert prompt_schedule(prompt, steps) == expected


def test_old_timelines_read_only_numbers_below_one_as_fractions():
    assert prompt_schedule("[a:b:1.0]", 20, old_timelines=True) == [(1, "a"), (20, "b")]
    assert prompt_schedule("[a:b:0.5]", 20, old_timelines=True) == [(10, "a"), (20, "b")]


def test_hires_schedule_counts_on_from_the_first_pass():
    # A1111's doctests with 10 first-pass and 10 hires steps.
    assert prompt_schedule("a [b:.5] c", 10, hires_steps=10) == [(10, "a b c")]
    assert prompt_schedule("a [b:1.5] c", 10, hires_steps=10) == [(5, "a  c"), (10, "a b c")]
    assert prompt_schedule("a [b:13] c", 10, hires_steps=10) == [(3, "a  c"), (10, "a b c")]


def test_schedule_then_attention_reads_each_step():
    texts = [text for _, text in prompt_schedule("a [(b:1.5):[c]:2]", 4)]
    assert [parse_prompt_attention(text) for text in texts] == [
        [("a ", 1.0), ("b", 1.5)],
        [("a ", 1.0), ("c", 1.0 * DOWN)],
    ]


def tag(kind: str, *positional: str, **named: str) -> ExtraNetworkTag:
    return ExtraNetworkTag(kind=kind, positional=positional, named=named)


EXTRACT_CASES = {
    "a cat": ("a cat", []),
    "": ("", []),
    "a <lora:foo:0.8> b": ("a  b", [tag("lora", "foo", "0.8")]),
    "<lora:a:1><hypernet:h:0.5> x, <lyco:l:te=0.5:unet=1>": (
        " x, ",
        [tag("lora", "a", "1"), tag("hypernet", "h", "0.5"), tag("lyco", "l", te="0.5", unet="1")],
    ),
    "x <lora:my lora : 0.5>": ("x ", [tag("lora", "my lora ", " 0.5")]),  # spaces kept as typed, as A1111
    "<lora:neg:-1.5> <lora:big:2>": (" ", [tag("lora", "neg", "-1.5"), tag("lora", "big", "2")]),
    "<lora:x:0.5:0.8:4>": ("", [tag("lora", "x", "0.5", "0.8", "4")]),
    "<lora:x:a=b=c>": ("", [tag("lora", "x", "a=b=c")]),  # split('=', 2) gives three parts: positional
    "<lora:x:=1>": ("", [tag("lora", "x", **{"": "1"})]),
    "[<lora:x:1>:y:3]": ("[:y:3]", [tag("lora", "x", "1")]),  # tags are taken before any other syntax is read
    "<my-lora:x> <lora:> <lora x> <:x>": ("<my-lora:x> <lora:> <lora x> <:x>", []),
    "<lora:a<b:1>": ("", [tag("lora", "a<b", "1")]),
}


@pytest.mark.parametrize(("prompt", "expected"), EXTRACT_CASES.items())
def test_extract_extra_networks_matches_a1111(prompt, expected):
    assert extract_extra_networks(prompt) == expected


def test_tag_name_named_and_hashing():
    (found,) = extract_extra_networks("<lora:style:te=0.5:0.7>")[1]
    assert found.kind == "lora"
    assert found.name == "style"
    assert found.positional == ("style", "0.7")
    assert dict(found.named) == {"te": "0.5"}
    assert found == tag("lora", "style", "0.7", te="0.5")
    assert hash(found) == hash(tag("lora", "style", "0.7", te="0.5"))
    with pytest.raises(TypeError):
        found.named["te"] = "1"  # type: ignore[index]
    assert tag("lora", te="1").name == ""


MULTIPLIER_CASES = {
    "<lora:x>": (1.0, 1.0),
    "<lora:x:0.8>": (0.8, 0.8),
    "<lora:x:-1.5>": (-1.5, -1.5),
    "<lora:x:2>": (2.0, 2.0),
    "<lora:x:0.5:0.8>": (0.5, 0.8),
    "<lora:x: 0.5 >": (0.5, 0.5),
    "<lora:x:te=0.3>": (0.3, 0.3),  # the UNet multiplier follows te when not given
    "<lora:x:unet=0.2>": (1.0, 0.2),
    "<lora:x:1:unet=0.2>": (1.0, 0.2),
    "<lora:x:0.8:te=0.5>": (0.5, 0.5),  # te= replaces the positional weight, and the UNet follows the replacement
    "<lora:x:0.8:0.6:te=0.5>": (0.5, 0.6),
    "<lora:x:unet=0.7:te=0.4>": (0.4, 0.7),
    "<lora:x:1:1:8>": (1.0, 1.0),  # a fourth item (dyn dim) does not change the multipliers
}


@pytest.mark.parametrize(("prompt", "expected"), MULTIPLIER_CASES.items())
def test_lora_multipliers_match_a1111(prompt, expected):
    (found,) = extract_extra_networks(prompt)[1]
    assert lora_multipliers(found) == expected


@pytest.mark.parametrize(
    ("prompt", "message_part"),
    [
        ("<lora:x:abc>", "'abc' in <lora:x:abc>"),
        ("<lora:x:0.5:heavy>", "UNet weight 'heavy' in <lora:x:0.5:heavy>"),
        ("<lora:x:te=high>", "text encoder weight 'high'"),
        ("<lora:x:unet=>", "UNet weight ''"),
        ("<lora:x:a=b=c>", "'a=b=c'"),
        ("<lora:x:nan>", "'nan'"),
        ("<lora:x:inf>", "'inf'"),
        ("<lora:te=1>", "<lora:te=1> names no lora"),
        ("<lora: :1>", "names no lora"),
    ],
)
def test_lora_multipliers_refuse_what_is_not_a_number(prompt, message_part):
    (found,) = extract_extra_networks(prompt)[1]
    with pytest.raises(UserError) as raised:
        lora_multipliers(found)
    assert message_part in str(raised.value)
