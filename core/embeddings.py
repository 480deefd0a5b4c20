"""Textual-inversion embeddings from models/embeddings: A1111's file formats, fit per checkpoint, and TI hashes."""

from __future__ import annotations

import logging
import threading
import weakref
from dataclasses import dataclass, field
from pathlib import Path

import torch

from core.checkpoint_files import SAFETENSORS_SUFFIXES, load_pickle_object, load_state_dict
from core.errors import UserError
from core.families import SDXL
from core.loader import LoadedCheckpoint
from core.prompt_chunks import EmbeddingIndex
from core.registry import ModelEntry, ModelRegistry

log = logging.getLogger(__name__)

SDXL_KEYS = ("clip_l", "clip_g")  # SDXL embeddings hold one set of vectors per text encoder
SINGLE = ""  # key of a one-encoder (SD1/SD2) embedding's vectors


@dataclass(frozen=True)
class Embedding:
    """One embedding file: used in prompts by its file name (stem), vectors per text encoder."""

    name: str
    path: Path
    vectors: dict[str, torch.Tensor]  # SINGLE, or "clip_l" and "clip_g"; each (count, width)

    @property
    def count(self) -> int:
        """How many token positions it takes."""
        return next(iter(self.vectors.values())).shape[0]

    @property
    def widths(self) -> dict[str, int]:
        return {key: tensor.shape[-1] for key, tensor in self.vectors.items()}


def read_embedding(path: Path) -> Embedding:
    """Read an embedding in one of A1111's formats: `string_to_param` (.pt), `emb_params` (.safetensors), a single
    tensor or a one-entry dict (diffusers' learned_embeds.bin), and SDXL's {"clip_l", "clip_g"}. Pickles go
    through the weights-only loader; a UserError says what is wrong with the file."""
    path = Path(path)
    if path.suffix.lower() in SAFETENSORS_SUFFIXES:
        data: object = load_state_dict(path)
    else:
        data = load_pickle_object(path)
    return Embedding(path.stem, path, _vectors(data, path.name))


def _vectors(data: object, file: str) -> dict[str, torch.Tensor]:
    if isinstance(data, dict) and "string_to_param" in data:
        params = data["string_to_param"]
        params = getattr(params, "_parameters", params)  # files saved from a torch ParameterDict
        data = dict(params) if isinstance(params, dict) else params
    if isinstance(data, dict) and all(key in data for key in SDXL_KEYS):
        vectors = {key: _matrix(data[key], file) for key in SDXL_KEYS}
        if vectors["clip_l"].shape[0] != vectors["clip_g"].shape[0]:
            raise UserError(f"{file}: its clip_l and clip_g parts hold different numbers of vectors.")
        return vectors
    if isinstance(data, dict):
        tensors = [value for value in data.values() if isinstance(value, torch.Tensor)]
        if len(tensors) != 1:
            raise UserError(
                f"{file} is not a textual-inversion embedding A1111 can read: expected one tensor, found "
                f"{len(tensors)}."
            )
        data = tensors[0]
    if isinstance(data, torch.Tensor):
        return {SINGLE: _matrix(data, file)}
    raise UserError(f"{file} is not a textual-inversion embedding (found {type(data).__name__}).")


def _matrix(value: object, file: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor) or value.dim() not in (1, 2) or value.numel() == 0:
        raise UserError(f"{file}: the embedding's vectors are not a (count, width) tensor.")
    return value.detach().reshape(-1, value.shape[-1]).to(torch.float32)


def checkpoint_widths(loaded: LoadedCheckpoint) -> dict[str, int]:
    """The width each text encoder's token embedding has: an embedding must match all of them."""
    pipe = loaded.pipeline
    if loaded.family is SDXL:
        models = (pipe.text_encoder, pipe.text_encoder_2)
        return {key: model.get_input_embeddings().embedding_dim for key, model in zip(SDXL_KEYS, models, strict=True)}
    return {SINGLE: pipe.text_encoder.get_input_embeddings().embedding_dim}


@dataclass
class CheckpointEmbeddings:
    """The embeddings one checkpoint can use (vectors on its device and dtype), and why others are skipped."""

    usable: dict[str, Embedding]
    skipped: dict[str, str]  # name → reason, for a notice when a prompt names it
    _indexes: dict[int, EmbeddingIndex] = field(default_factory=dict, repr=False)

    def index(self, tokenizer) -> EmbeddingIndex:
        # Kept per tokenizer: building it tokenizes every name.
        key = id(tokenizer)
        if key not in self._indexes:
            counts = {name: embedding.count for name, embedding in self.usable.items()}
            self._indexes[key] = EmbeddingIndex(tokenizer, counts, self.skipped)
        return self._indexes[key]

    def vectors(self, name: str, key: str) -> torch.Tensor:
        return self.usable[name].vectors[key]


def _stamp(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


class EmbeddingLibrary:
    """Reads models/embeddings once per file version and keeps, per loaded checkpoint, the set that fits it."""

    def __init__(self, registry: ModelRegistry):
        self.registry = registry
        self._lock = threading.Lock()
        self._files: dict[Path, tuple[tuple[int, int], Embedding | UserError]] = {}
        # Keyed by the checkpoint's first text encoder, so an evicted checkpoint's vectors go with it.
        self._per_checkpoint: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def entries(self) -> list[ModelEntry]:
        """The embedding files, for a browser; the name to type is `entry.stem`."""
        return [entry for entry in self.registry.list("embedding") if entry.path.is_file()]

    def names(self) -> list[str]:
        """The words that call an embedding, as typed in a prompt (file names without extension)."""
        return sorted({entry.stem for entry in self.entries()})

    def for_checkpoint(self, loaded: LoadedCheckpoint) -> CheckpointEmbeddings:
        """The embeddings that fit this checkpoint, re-read where a file changed since the last job."""
        with self._lock:
            entries = self.entries()
            signature = tuple((entry.path, _stamp(entry.path)) for entry in entries)
            key = loaded.pipeline.text_encoder
            cached = self._per_checkpoint.get(key)
            if cached is not None and cached[0] == signature:
                return cached[1]
            result = self._fit(entries, loaded)
            self._per_checkpoint[key] = (signature, result)
            return result

    def _fit(self, entries: list[ModelEntry], loaded: LoadedCheckpoint) -> CheckpointEmbeddings:
        widths = checkpoint_widths(loaded)
        encoder = loaded.pipeline.text_encoder
        usable: dict[str, Embedding] = {}
        skipped: dict[str, str] = {}
        for entry in entries:
            name = entry.stem
            if name in usable or name in skipped:
                continue  # the same name in two subfolders: the first (sorted) wins
            read = self._read(entry.path)
            if isinstance(read, UserError):
                skipped[name] = str(read)
            elif read.widths != widths:
                skipped[name] = (
                    f"The embedding '{name}' was skipped: it was made for another model type "
                    f"(vector width {_describe(read.widths)}, this checkpoint needs {_describe(widths)})."
                )
            else:
                vectors = {k: v.to(encoder.device, encoder.dtype) for k, v in read.vectors.items()}
                usable[name] = Embedding(name, read.path, vectors)
        return CheckpointEmbeddings(usable, skipped)

    def _read(self, path: Path) -> Embedding | UserError:
        stamp = _stamp(path)
        cached = self._files.get(path)
        if cached is None or cached[0] != stamp:
            try:
                cached = (stamp, read_embedding(path))
            except UserError as exc:
                log.warning("Embedding %s not loaded: %s", path.name, exc)
                cached = (stamp, exc)
            self._files[path] = cached
        return cached[1]

    def ti_hashes(self, names: list[str] | tuple[str, ...], embeddings: CheckpointEmbeddings) -> str | None:
        """A1111's `TI hashes` value: "name: hash, …" with the first 12 hex characters of each file's sha256."""
        parts = []
        for name in names:
            embedding = embeddings.usable.get(name)
            if embedding is None:
                continue
            digest = file_sha256(self.registry, embedding.path)
            parts.append(f"{name.replace(':', '').replace(',', '')}: {digest[:12]}")
        return ", ".join(parts) or None


def file_sha256(registry: ModelRegistry, path: Path) -> str:
    """The file's full sha256 through the registry's hash cache, so each file version is hashed once."""
    registry.short_hash(ModelEntry("embedding", path.name, path))  # computes and caches the full digest
    digest = registry.cache.get(path, "sha256")
    assert digest is not None
    return digest


def _describe(widths: dict[str, int]) -> str:
    if set(widths) == set(SDXL_KEYS):
        return f"{widths['clip_l']}+{widths['clip_g']} (SDXL)"
    return str(next(iter(widths.values())))
