"""AUTOMATIC1111's prompt syntax read exactly as A1111 1.10 does: emphasis, BREAK, prompt editing, extra networks."""

from __future__ import annotations

import functools
import math
import re
import types
from collections.abc import Mapping
from dataclasses import dataclass, field

import lark

from core.errors import UserError

BREAK = "BREAK"

# --- emphasis -------------------------------------------------------------------------------------------------------

# One token per match, tried in this order (as A1111's scanner): escapes, brackets, "(text:weight)" closers, plain
# text, a lone ":". A1111 accepts any run of digits and dots as a weight and then crashes in float() on "1.2.3"; this
# pattern only takes what float() reads, so such a closer falls through to ":" + text + ")" instead of an exception.
_ATTENTION_TOKEN = re.compile(
    r"""
    \\[()\[\]\\]                            # escaped bracket or backslash: the literal character
    | \\                                    # a lone backslash: A1111 drops it
    | [(\[]                                 # opening bracket
    | :\s*(?P<weight>[+-]?(?:\d+\.?\d*|\.\d+))\s*\)   # ":1.3)" or ": 1.3 )" closes a round bracket, weighted
    | [)\]]                                 # closing bracket
    | [^\\()\[\]:]+                         # plain text
    | :                                     # a colon that is not a weight
    """,
    re.VERBOSE,
)
_BREAK_WORD = re.compile(r"\s*\bBREAK\b\s*", re.S)
_ROUND_MULTIPLIER = 1.1
_SQUARE_MULTIPLIER = 1 / 1.1


def parse_prompt_attention(text: str) -> list[tuple[str, float]]:
    """Split a prompt into (text, weight) pieces as A1111 does; BREAK becomes (BREAK, -1.0).

    (a) x1.1, ((a)) x1.21, [a] /1.1, (a:1.3); nesting multiplies; escapes give literal characters; a bracket never
    closed still weights the rest, a stray closer is literal text; equal neighbours are merged. As in A1111, a BREAK
    inside brackets is multiplied too (e.g. -1.1), and a consumer that checks `weight == -1.0` then reads it as text.
    """
    pieces: list[list] = []  # mutable [text, weight] pairs: brackets multiply ranges of them in place
    open_round: list[int] = []
    open_square: list[int] = []

    def multiply_from(start: int, multiplier: float) -> None:
        for piece in pieces[start:]:
            piece[1] *= multiplier

    for match in _ATTENTION_TOKEN.finditer(text):
        token, weight = match.group(0), match.group("weight")
        if token.startswith("\\"):
            pieces.append([token[1:], 1.0])
        elif token == "(":
            open_round.append(len(pieces))
        elif token == "[":
            open_square.append(len(pieces))
        elif weight is not None and open_round:
            multiply_from(open_round.pop(), float(weight))
        elif token == ")" and open_round:
            multiply_from(open_round.pop(), _ROUND_MULTIPLIER)
        elif token == "]" and open_square:
            multiply_from(open_square.pop(), _SQUARE_MULTIPLIER)
        else:
            for index, part in enumerate(_BREAK_WORD.split(token)):
                if index > 0:
                    pieces.append([BREAK, -1.0])
                pieces.append([part, 1.0])

    # Unclosed brackets weight everything after them, round ones first, in the order they were opened (as A1111).
    for start in open_round:
        multiply_from(start, _ROUND_MULTIPLIER)
    for start in open_square:
        multiply_from(start, _SQUARE_MULTIPLIER)

    merged: list[list] = []
    for piece in pieces:
        if merged and merged[-1][1] == piece[1]:
            merged[-1][0] += piece[0]
        else:
            merged.append(piece)
    return [(piece_text, piece_weight) for piece_text, piece_weight in merged] or [("", 1.0)]


# --- prompt editing and alternation ---------------------------------------------------------------------------------

# The same language as A1111's grammar, so that Earley's choices on ambiguous prompts (and so the texts) match its
# own: a "start" may hold stray brackets and colons, "emphasized" keeps its brackets (parse_prompt_attention reads
# them later), "scheduled" is [from:to:when] with from optional, "alternate" is [a|b|...] with empty options allowed.
_SCHEDULE_GRAMMAR = r"""
!start: (prompt | /[][():]/+)*
prompt: (emphasized | scheduled | alternate | plain | WHITESPACE)*
!emphasized: "(" prompt ")"
           | "(" prompt ":" prompt ")"
           | "[" prompt "]"
scheduled: "[" [prompt ":"] prompt ":" [WHITESPACE] NUMBER [WHITESPACE] "]"
alternate: "[" prompt ("|" [prompt])+ "]"
WHITESPACE: /\s+/
plain: /([^\\\[\]():|]|\\.)+/
%import common.SIGNED_NUMBER -> NUMBER
"""


@functools.cache
def _schedule_parser() -> lark.Lark:
    # Built on first use, not at import: nothing happens at import time.
    return lark.Lark(_SCHEDULE_GRAMMAR)


@functools.lru_cache(maxsize=256)
def _parse_schedule(prompt: str) -> lark.Tree | None:
    """The prompt's tree, or None where A1111 would use the prompt literally (the grammar cannot read it)."""
    try:
        return _schedule_parser().parse(prompt)
    except (lark.exceptions.LarkError, RecursionError):
        return None


@dataclass(frozen=True)
class _Timeline:
    """How a `when` number becomes a step, as A1111's timelines (new by default, "old" for old infotexts)."""

    steps: int
    int_offset: int = 0
    float_offset: float = 0.0
    old: bool = False

    def end_step(self, number: str) -> int:
        value = float(number)
        if self.old:
            value = value * self.steps if value < 1 else value
        elif "." in number:
            value = (value - self.float_offset) * self.steps
        else:
            value = value - self.int_offset
        # int() truncates, so 0.29 of 100 steps is step 28 (0.29 * 100 == 28.999...), exactly as in A1111.
        return min(self.steps, int(value))


def _render(node: lark.Tree | lark.Token | None, step: int, timeline: _Timeline) -> str:
    """The text of one node of the tree at one step."""
    if node is None:  # an absent [from:] part or an empty alternation option
        return ""
    if isinstance(node, lark.Token):
        return node.value
    if node.data == "scheduled":
        before, after, _, number, _ = node.children
        return _render(before if step <= timeline.end_step(number) else after, step, timeline)
    if node.data == "alternate":
        return _render(node.children[(step - 1) % len(node.children)], step, timeline)
    return "".join(_render(child, step, timeline) for child in node.children)


def _change_steps(tree: lark.Tree, timeline: _Timeline) -> list[int]:
    """Every step after which the text may change, ascending, ending with the last step."""
    ends = {timeline.steps}
    for node in tree.iter_subtrees():
        if node.data == "scheduled":
            end = timeline.end_step(node.children[-2])
            if end >= 1:
                ends.add(end)
        elif node.data == "alternate":
            ends.update(range(1, timeline.steps + 1))
    return sorted(ends)


def prompt_schedule(
    prompt: str, steps: int, *, hires_steps: int | None = None, old_timelines: bool = False
) -> list[tuple[int, str]]:
    """A1111's get_learned_conditioning_prompt_schedules for one prompt: [(end_step, text), ...].

    [from:to:when], [to:when], [from::when] and nesting; `when` without a dot is a step, with a dot a fraction of the
    steps (A1111 1.10; `old_timelines` = its "Old prompt editing timelines": only numbers < 1 are fractions);
    [a|b|c] takes option (step - 1) % n at each step. With `hires_steps`, `steps` are the first pass's and the
    schedule is for the hires pass, as A1111 (ints count on from the first pass, fractions from 1.0). A prompt the
    grammar cannot read is used literally. Emphasis brackets stay in the texts.
    """
    if hires_steps is None or old_timelines:
        timeline = _Timeline(steps=steps, old=old_timelines)
    else:
        timeline = _Timeline(steps=hires_steps, int_offset=steps, float_offset=1.0)
    tree = _parse_schedule(prompt)
    if tree is None:
        return [(timeline.steps, prompt)]
    try:
        return [(end, _render(tree, end, timeline)) for end in _change_steps(tree, timeline)]
    except RecursionError:  # absurdly deep nesting: A1111 would crash; reading it literally keeps the job alive
        return [(timeline.steps, prompt)]


# --- extra networks -------------------------------------------------------------------------------------------------

_EXTRA_NETWORK_TAG = re.compile(r"<(\w+):([^>]+)>")


@dataclass(frozen=True)
class ExtraNetworkTag:
    """One <kind:args> tag, its args read as A1111's ExtraNetworkParams (split on ':', key=value items are named)."""

    kind: str
    positional: tuple[str, ...]
    named: Mapping[str, str] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        # A read-only copy keeps the frozen tag from changing through a dict the caller still holds.
        object.__setattr__(self, "positional", tuple(self.positional))
        object.__setattr__(self, "named", types.MappingProxyType(dict(self.named)))

    @property
    def name(self) -> str:
        """The network's name as typed (A1111 does not strip spaces); "" when the tag has none."""
        return self.positional[0] if self.positional else ""

    @property
    def text(self) -> str:
        """The tag written back as <kind:...>, for messages."""
        items = [*self.positional, *(f"{key}={value}" for key, value in self.named.items())]
        return f"<{self.kind}:{':'.join(items)}>"

    @classmethod
    def from_args(cls, kind: str, args: str) -> ExtraNetworkTag:
        """Read the part after the first ':' as A1111 does: "a=b" is named, anything else (even "a=b=c") positional."""
        positional: list[str] = []
        named: dict[str, str] = {}
        for item in args.split(":"):
            parts = item.split("=", 2)
            if len(parts) == 2:
                named[parts[0]] = parts[1]
            else:
                positional.append(item)
        return cls(kind=kind, positional=tuple(positional), named=named)


def extract_extra_networks(prompt: str) -> tuple[str, list[ExtraNetworkTag]]:
    """Remove every <kind:args> tag from the prompt (A1111's parse_prompt); return the text left and the tags in order.

    The text is what goes to the text encoder; A1111 leaves the spaces around a removed tag as they are.
    """
    tags: list[ExtraNetworkTag] = []

    def take(match: re.Match[str]) -> str:
        tags.append(ExtraNetworkTag.from_args(match.group(1), match.group(2)))
        return ""

    return _EXTRA_NETWORK_TAG.sub(take, prompt), tags


def _multiplier(tag: ExtraNetworkTag, value: str, what: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    # float() also reads "nan" and "inf"; neither is a weight anyone means, and both would ruin the image silently.
    if not math.isfinite(number):
        raise UserError(f"The {what} weight {value!r} in {tag.text} is not a number; write it like <lora:name:0.8>.")
    return number


def lora_multipliers(tag: ExtraNetworkTag) -> tuple[float, float]:
    """(text-encoder multiplier, UNet multiplier) of a <lora:...> tag, read as A1111's extra_networks_lora.

    <lora:name> is 1.0 for both, <lora:name:w> w for both, <lora:name:te:unet> each; te=/unet= override the
    positional ones, and the UNet multiplier defaults to the text encoder's (after te= is applied).
    """
    if not tag.positional or not tag.name.strip():
        raise UserError(f"The tag {tag.text} names no {tag.kind}; write it like <{tag.kind}:name:0.8>.")
    te = _multiplier(tag, tag.positional[1], "text encoder") if len(tag.positional) > 1 else 1.0
    if "te" in tag.named:
        te = _multiplier(tag, tag.named["te"], "text encoder")
    unet = _multiplier(tag, tag.positional[2], "UNet") if len(tag.positional) > 2 else te
    if "unet" in tag.named:
        unet = _multiplier(tag, tag.named["unet"], "UNet")
    return te, unet
