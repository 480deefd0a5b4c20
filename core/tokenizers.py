"""CLIP tokenizers built from the files shipped in core/assets, so no hub is ever asked for them."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from transformers import CLIPTokenizer

TOKENIZER_DIR = Path(__file__).resolve().parent / "assets" / "clip_tokenizer"

# SD1.x uses <|endoftext|> as padding; SD2.x and SDXL's second (OpenCLIP) encoder pad with "!" (id 0).
PAD_ENDOFTEXT = "<|endoftext|>"
PAD_EXCLAMATION = "!"


@lru_cache(maxsize=2)
def clip_tokenizer(pad_token: str = PAD_ENDOFTEXT) -> CLIPTokenizer:
    """The CLIP BPE tokenizer every SD1.x/SD2.x/SDXL text encoder uses (77 tokens, 49408 vocab)."""
    return CLIPTokenizer(
        vocab=str(TOKENIZER_DIR / "vocab.json"),
        merges=str(TOKENIZER_DIR / "merges.txt"),
        pad_token=pad_token,
        model_max_length=77,
    )
