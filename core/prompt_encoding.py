"""Encodes prompts as A1111 does: 75-token chunks, (word:1.3) weights with the mean restored, clip skip, SDXL's pair.

Why by hand and not compel: compel reads its own syntax (`word++`, `(word)1.3`, `.and()`), not A1111's, and weights
by a different arithmetic (weights below 1 blend towards an encoding without the words instead of scaling the
hidden states), so a prompt copied from a model site would give another image. A1111's rule is short: encode each
77-token chunk, multiply the hidden states by the token weights, rescale to the original mean, concatenate chunks.
Textual-inversion vectors are put in place of placeholder tokens at the token-embedding layer (a hook held only
for the call), as A1111's EmbeddingsWithFixes does, so neither the tokenizer nor the model is ever changed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

import torch
from diffusers import DiffusionPipeline

from core.families import SD2, SDXL, Family
from core.prompt_chunks import ChunkedPrompt, EmbeddingIndex, PromptChunk, chunk_prompt, count_tokens

__all__ = ["Conditioning", "PromptEncoder", "apply_emphasis", "count_tokens", "pad_to_chunks"]

POSITIONS = 77  # positions per chunk: BOS + 75 tokens + EOS


@dataclass(frozen=True)
class Conditioning:
    """One text's encoding: (1, 77 x chunks, width) hidden states, and for SDXL the pooled (projected) vector."""

    embeds: torch.Tensor
    pooled: torch.Tensor | None = None

    @property
    def chunks(self) -> int:
        return self.embeds.shape[1] // POSITIONS


class EmbeddingVectors(Protocol):
    """What the encoder needs of the checkpoint's textual-inversion embeddings (core.embeddings provides it)."""

    def index(self, tokenizer) -> EmbeddingIndex: ...

    def vectors(self, name: str, key: str) -> torch.Tensor: ...


@dataclass(frozen=True)
class _TextEncoder:
    """One CLIP text encoder of the pipeline and how its output becomes conditioning."""

    model: torch.nn.Module
    tokenizer: object
    read: Callable[[object], torch.Tensor]  # model output → hidden states used
    key: str  # which vectors of an embedding this encoder takes: "" (one-encoder files), "clip_l", "clip_g"
    pooled: bool  # its projected pooled output is SDXL's pooled conditioning


def _hidden_layer(model: torch.nn.Module, depth: int, final_norm: bool) -> Callable[[object], torch.Tensor]:
    """Reader of the hidden states `depth` layers from the end (1 = last layer), with or without the final norm."""
    norm = getattr(model, "text_model", model).final_layer_norm
    if depth <= 1 and final_norm:
        return lambda output: output.last_hidden_state

    def read(output) -> torch.Tensor:
        states = output.hidden_states[-min(depth, len(output.hidden_states))]
        return norm(states) if final_norm else states

    return read


def _text_encoders(pipeline: DiffusionPipeline, family: Family, clip_skip: int) -> list[_TextEncoder]:
    """Clip skip in A1111's counting, where 1 is the last layer.

    SD1: hidden_states[-clip_skip] through the final norm (A1111). SD2: the loaded encoder already stops at
    OpenCLIP's penultimate layer, which SD2 was trained on, so clip skip 1 and 2 both mean it and 3 one more layer
    (Forge's rule; A1111 ignores clip skip for SD2). SDXL: both encoders' penultimate states without the final norm
    for clip skip 1 and one more layer per step, as diffusers counts (A1111 ignores clip skip for SDXL by default).
    """
    if family is SDXL:
        pairs = (
            (pipeline.text_encoder, pipeline.tokenizer, "clip_l"),
            (pipeline.text_encoder_2, pipeline.tokenizer_2, "clip_g"),
        )
        return [
            _TextEncoder(model, tokenizer, _hidden_layer(model, clip_skip + 1, False), key, pooled=key == "clip_g")
            for model, tokenizer, key in pairs
        ]
    depth = max(1, clip_skip - 1) if family is SD2 else clip_skip
    read = _hidden_layer(pipeline.text_encoder, depth, True)
    return [_TextEncoder(pipeline.text_encoder, pipeline.tokenizer, read, "", False)]


def apply_emphasis(z: torch.Tensor, multipliers: torch.Tensor) -> torch.Tensor:
    """A1111's "Original" emphasis per chunk: z x weight, then rescaled so each chunk keeps its mean."""
    if bool((multipliers == 1).all()):
        return z  # unweighted: exactly the encoder's output (and no 0/0 where a chunk's mean is 0)
    original = z.float()
    weighted = original * multipliers.to(original)[..., None]
    dims = tuple(range(1, z.dim()))
    old_mean, new_mean = original.mean(dim=dims, keepdim=True), weighted.mean(dim=dims, keepdim=True)
    ratio = torch.where(new_mean == 0, torch.ones_like(new_mean), old_mean / new_mean)
    return (weighted * ratio).to(z.dtype)


def _padded_ids(tokens: list[int], tokenizer) -> list[int]:
    """A chunk's ids for this tokenizer: after the first EOS, its own pad token (SD2/OpenCLIP pad with "!")."""
    end, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    if pad is None or pad == end:
        return tokens
    cut = tokens.index(end) + 1
    return tokens[:cut] + [pad] * (len(tokens) - cut)


@contextmanager
def _vectors_injected(model: torch.nn.Module, fixes: list[list[tuple[int, torch.Tensor]]]) -> Iterator[None]:
    """While held, the token-embedding layer outputs the embeddings' vectors at their chunks' placeholders."""
    if not any(fixes):
        yield
        return

    def hook(module, args, output: torch.Tensor) -> torch.Tensor:
        output = output.clone()
        for row, row_fixes in enumerate(fixes):
            for offset, vectors in row_fixes:
                start = offset + 1  # after BOS
                count = min(output.shape[1] - start - 1, vectors.shape[0])
                output[row, start : start + count] = vectors[:count].to(output)
        return output

    handle = model.get_input_embeddings().register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


class PromptEncoder:
    """Encodes texts with one loaded pipeline's text encoder(s), its clip skip and usable embeddings."""

    def __init__(
        self,
        pipeline: DiffusionPipeline,
        family: Family,
        clip_skip: int = 1,
        embeddings: EmbeddingVectors | None = None,
    ):
        self.encoders = _text_encoders(pipeline, family, clip_skip)
        self.tokenizer = pipeline.tokenizer
        self.embeddings = embeddings
        self.index = embeddings.index(self.tokenizer) if embeddings is not None else None
        self.embeddings_used: dict[str, None] = {}  # names in order of first use
        self.embeddings_skipped: dict[str, None] = {}
        self._empty: Conditioning | None = None

    def chunk(self, text: str) -> ChunkedPrompt:
        """The chunks of a text (one of a schedule's; emphasis syntax allowed, no <lora:> tags)."""
        chunked = chunk_prompt(text, self.tokenizer, self.index)
        self.embeddings_used.update(dict.fromkeys(chunked.embeddings_used))
        self.embeddings_skipped.update(dict.fromkeys(chunked.embeddings_skipped))
        return chunked

    @torch.inference_mode()
    def encode(self, text: str) -> Conditioning:
        chunks = self.chunk(text).chunks
        outputs = [self._run(encoder, chunks) for encoder in self.encoders]
        embeds = torch.cat([z for z, _ in outputs], dim=-1)  # SDXL: 768 + 1280 features per position
        pooled = next((p for _, p in outputs if p is not None), None)
        return Conditioning(embeds.reshape(1, -1, embeds.shape[-1]), pooled)

    def empty(self) -> Conditioning:
        """The encoding of "" (one chunk), which pads shorter conditionings."""
        if self._empty is None:
            self._empty = self.encode("")
        return self._empty

    def _run(self, encoder: _TextEncoder, chunks: list[PromptChunk]) -> tuple[torch.Tensor, torch.Tensor | None]:
        model = encoder.model
        ids = torch.tensor([_padded_ids(c.tokens, encoder.tokenizer) for c in chunks], device=model.device)
        fixes = [[(offset, self._vectors(name, encoder.key)) for offset, name in c.fixes] for c in chunks]
        with _vectors_injected(model, fixes):
            output = model(input_ids=ids, output_hidden_states=True)
        z = apply_emphasis(encoder.read(output), torch.tensor([c.multipliers for c in chunks]))
        # SDXL's pooled conditioning comes from the first chunk only, as in A1111.
        pooled = output.text_embeds[:1] if encoder.pooled else None
        return z, pooled

    def _vectors(self, name: str, key: str) -> torch.Tensor:
        assert self.embeddings is not None  # fixes exist only where an index found an embedding
        return self.embeddings.vectors(name, key)


def pad_to_chunks(conditioning: Conditioning, chunks: int, empty: Conditioning) -> Conditioning:
    """`conditioning` lengthened to `chunks` chunks with encodings of the empty prompt (A1111's pad_cond)."""
    missing = chunks - conditioning.chunks
    if missing <= 0:
        return conditioning
    embeds = torch.cat([conditioning.embeds, *[empty.embeds] * missing], dim=1)
    return Conditioning(embeds, conditioning.pooled)
