"""Splits a prompt into A1111's 75-token chunks with per-token weights and embedding slots; counts tokens for the UI."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from transformers import PreTrainedTokenizerBase

from core.prompt_syntax import BREAK, extract_extra_networks, parse_prompt_attention, prompt_schedule

CHUNK_LENGTH = 75  # tokens per chunk; with BOS and EOS the 77 positions CLIP was trained on
COMMA_BACKTRACK = 20  # A1111's comma_padding_backtrack default: how far back a full chunk looks for a comma
EMBEDDING_PLACEHOLDER = 0  # token id under an embedding's vectors (replaced before the encoder sees it), as A1111


@dataclass
class PromptChunk:
    """One chunk: 77 token ids (BOS, 75, EOS; padded with EOS), a weight per position, and embedding slots."""

    tokens: list[int] = field(default_factory=list)
    multipliers: list[float] = field(default_factory=list)
    # (offset in the 75 tokens, embedding name): the embedding's vectors start there.
    fixes: list[tuple[int, str]] = field(default_factory=list)


@dataclass(frozen=True)
class ChunkedPrompt:
    chunks: list[PromptChunk]
    token_count: int  # what A1111's counter shows: 75 per closed chunk plus the tokens of the last
    embeddings_used: tuple[str, ...] = ()  # in order of first appearance
    # Embeddings named in the prompt that the checkpoint cannot use (wrong size): read as plain words.
    embeddings_skipped: tuple[str, ...] = ()


class EmbeddingIndex:
    """Finds embedding names in token ids as A1111 does: a name matches where its own tokens appear in the prompt's.

    `vectors` maps each usable name to its vector count; `skipped` names are found (so they can be reported) but
    their words stay ordinary text.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, vectors: Mapping[str, int], skipped: Iterable[str] = ()):
        self.vectors = dict(vectors)
        self._by_first: dict[int, list[tuple[list[int], str]]] = {}
        names = [*self.vectors, *skipped]
        for name, ids in zip(names, _tokenize(tokenizer, names), strict=True):
            if ids:
                self._by_first.setdefault(ids[0], []).append((ids, name))
        for candidates in self._by_first.values():
            candidates.sort(key=lambda item: -len(item[0]))  # longest name first, as A1111

    def find(self, tokens: list[int], position: int) -> tuple[str, int] | None:
        """(name, tokens its name takes) of the embedding whose name starts at `position`, or None."""
        for ids, name in self._by_first.get(tokens[position], ()):
            if tokens[position : position + len(ids)] == ids:
                return name, len(ids)
        return None


def _tokenize(tokenizer: PreTrainedTokenizerBase, texts: list[str]) -> list[list[int]]:
    if not texts:
        return []
    # verbose=False: pieces longer than 77 tokens are expected here, chunking takes care of them.
    return tokenizer(texts, truncation=False, add_special_tokens=False, verbose=False)["input_ids"]


def _comma_id(tokenizer: PreTrainedTokenizerBase) -> int | None:
    # One lookup: get_vocab() would copy the whole 49k-entry vocabulary (~25 ms, three times a job).
    token = tokenizer.convert_tokens_to_ids(",</w>")
    return None if token is None or token == tokenizer.unk_token_id else token


class _Chunker:
    """A1111's tokenize_line (modules/sd_hijack_clip.py), quirks included, as a small state machine."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, index: EmbeddingIndex | None):
        self.tokenizer = tokenizer
        self.index = index
        self.comma = _comma_id(tokenizer)
        self.chunks: list[PromptChunk] = []
        self.chunk = PromptChunk()
        self.token_count = 0
        self.last_comma = -1
        self.used: dict[str, None] = {}  # dicts as ordered sets
        self.skipped: dict[str, None] = {}

    def next_chunk(self, is_last: bool = False) -> None:
        """Close the current chunk: pad it to 75 with EOS and add BOS/EOS around it."""
        chunk = self.chunk
        self.token_count += len(chunk.tokens) if is_last else CHUNK_LENGTH
        padding = CHUNK_LENGTH - len(chunk.tokens)
        end = self.tokenizer.eos_token_id
        chunk.tokens = [self.tokenizer.bos_token_id, *chunk.tokens, *[end] * padding, end]
        chunk.multipliers = [1.0, *chunk.multipliers, *[1.0] * padding, 1.0]
        self.last_comma = -1
        self.chunks.append(chunk)
        self.chunk = PromptChunk()

    def add_piece(self, tokens: list[int], weight: float) -> None:
        position = 0
        while position < len(tokens):
            token = tokens[position]
            if token == self.comma:
                self.last_comma = len(self.chunk.tokens)
            elif self._should_backtrack():
                self._move_after_comma()
            if len(self.chunk.tokens) == CHUNK_LENGTH:
                self.next_chunk()
            position += self._add_token_or_embedding(tokens, position, weight)

    def _should_backtrack(self) -> bool:
        # A full chunk with a comma among its last 20 tokens: the words after that comma move to the next chunk.
        full = len(self.chunk.tokens) == CHUNK_LENGTH
        return full and self.last_comma != -1 and len(self.chunk.tokens) - self.last_comma <= COMMA_BACKTRACK

    def _move_after_comma(self) -> None:
        cut = self.last_comma + 1
        tokens, multipliers = self.chunk.tokens[cut:], self.chunk.multipliers[cut:]
        self.chunk.tokens, self.chunk.multipliers = self.chunk.tokens[:cut], self.chunk.multipliers[:cut]
        self.next_chunk()
        self.chunk.tokens, self.chunk.multipliers = tokens, multipliers

    def _add_token_or_embedding(self, tokens: list[int], position: int, weight: float) -> int:
        """Add what starts at `position`; return how many of the piece's tokens it took."""
        found = self.index.find(tokens, position) if self.index else None
        if found is not None and found[0] not in self.index.vectors:
            self.skipped[found[0]] = None
            found = None
        if found is None:
            self.chunk.tokens.append(tokens[position])
            self.chunk.multipliers.append(weight)
            return 1
        name, name_length = found
        vectors = self.index.vectors[name]
        if len(self.chunk.tokens) + vectors > CHUNK_LENGTH:
            self.next_chunk()  # an embedding's vectors are never split across chunks
        self.chunk.fixes.append((len(self.chunk.tokens), name))
        self.chunk.tokens += [EMBEDDING_PLACEHOLDER] * vectors
        self.chunk.multipliers += [weight] * vectors
        self.used[name] = None
        return name_length


def chunk_pieces(
    pieces: list[tuple[str, float]], tokenizer: PreTrainedTokenizerBase, index: EmbeddingIndex | None = None
) -> ChunkedPrompt:
    """Chunks of weighted pieces (parse_prompt_attention's output). BREAK closes the current chunk; an empty
    prompt is one chunk."""
    chunker = _Chunker(tokenizer, index)
    for tokens, (text, weight) in zip(_tokenize(tokenizer, [text for text, _ in pieces]), pieces, strict=True):
        if text == BREAK and weight == -1:
            chunker.next_chunk()
        else:
            chunker.add_piece(tokens, weight)
    if chunker.chunk.tokens or not chunker.chunks:
        chunker.next_chunk(is_last=True)
    return ChunkedPrompt(chunker.chunks, chunker.token_count, tuple(chunker.used), tuple(chunker.skipped))


def chunk_prompt(text: str, tokenizer: PreTrainedTokenizerBase, index: EmbeddingIndex | None = None) -> ChunkedPrompt:
    """Chunks of one prompt text (no schedule syntax: a text prompt_schedule gave)."""
    return chunk_pieces(parse_prompt_attention(text), tokenizer, index)


def count_tokens(
    text: str, tokenizer: PreTrainedTokenizerBase, steps: int = 20, index: EmbeddingIndex | None = None
) -> tuple[int, int]:
    """A1111's token counter under a prompt box: (tokens used, chunk limit), e.g. (37, 75) or (80, 150).

    <lora:…> tags are not counted; with prompt editing the longest of the schedule's texts counts (over `steps`,
    as A1111's counter uses the steps slider). Tokenizer only, no model: cheap enough to run as the user types.
    """
    text, _ = extract_extra_networks(text)
    texts = {scheduled for _, scheduled in prompt_schedule(text, max(1, steps))}
    used = max(chunk_prompt(scheduled, tokenizer, index).token_count for scheduled in texts)
    return used, math.ceil(max(used, 1) / CHUNK_LENGTH) * CHUNK_LENGTH
