"""What is in models/: scans A1111's folders, names models safely, and caches family and short hash on disk."""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from core.checkpoint_files import WEIGHT_SUFFIXES, read_shapes
from core.detect import detect_checkpoint, detect_controlnet
from core.errors import UserError

log = logging.getLogger(__name__)

# A1111's folder names, so an existing A1111 models folder works as it is.
FOLDERS = {
    "checkpoint": "Stable-diffusion",
    "lora": "Lora",
    "controlnet": "ControlNet",
    "vae": "VAE",
    "embedding": "embeddings",
    "vae_approx": "VAE-approx",  # TAESD preview decoders (A1111's folder: taesd_decoder.pth, taesdxl_decoder.pth)
    "annotator": "annotators",  # ControlNet preprocessors' weights (lllyasviel/Annotators file names)
}


@dataclass(frozen=True)
class ModelEntry:
    """One model file (or diffusers folder) found under models/<kind folder>/."""

    kind: str
    name: str  # path relative to the kind's folder, with "/" separators: what users pick and infotext names
    path: Path

    @property
    def stem(self) -> str:
        """The name A1111 writes as "Model:" in infotext (file name without extension)."""
        return Path(self.name).stem if self.path.is_file() else Path(self.name).name


class HashCache:
    """sha256 and detected family per file, keyed by path and invalidated by size/mtime: a 7 GB file is hashed once."""

    def __init__(self, file: Path):
        self.file = Path(file)
        self._lock = threading.Lock()
        try:
            self._data = json.loads(self.file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            self._data = {}

    def get(self, path: Path, field: str) -> str | None:
        record = self._data.get(str(path.resolve()))
        if record and record.get("stamp") == _stamp(path):
            return record.get(field)
        return None

    def put(self, path: Path, field: str, value: str) -> None:
        with self._lock:
            key, stamp = str(path.resolve()), _stamp(path)
            record = self._data.get(key)
            if not record or record.get("stamp") != stamp:
                record = self._data[key] = {"stamp": stamp}
            record[field] = value
            self.file.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.file.with_suffix(".tmp")
            tmp.write_text(json.dumps(self._data, indent=1), encoding="utf-8")
            tmp.replace(self.file)


def _stamp(path: Path) -> str:
    stat = path.stat()
    return f"{stat.st_size}:{stat.st_mtime_ns}"


class ModelRegistry:
    """Lists models by kind and resolves names to paths that cannot escape their folder."""

    def __init__(self, models_dir: Path, cache: HashCache):
        self.models_dir = Path(models_dir)
        self.cache = cache

    def folder(self, kind: str) -> Path:
        return self.models_dir / FOLDERS[kind]

    def list(self, kind: str) -> list[ModelEntry]:
        root = self.folder(kind)
        if not root.is_dir():
            return []
        # A diffusers pipeline folder has a model_index.json; a single model's folder (VAE, ControlNet) a config.json.
        markers = ("model_index.json", "config.json") if kind in ("vae", "controlnet") else ("model_index.json",)

        def is_diffusers(folder: Path) -> bool:
            return folder.is_dir() and any((folder / marker).is_file() for marker in markers)

        entries = []
        for path in sorted(root.rglob("*")):
            is_weights = path.is_file() and path.suffix.lower() in WEIGHT_SUFFIXES
            inside_diffusers = any(is_diffusers(p) for p in path.parents if p != root and p.is_relative_to(root))
            if (is_weights or is_diffusers(path)) and not inside_diffusers and not path.name.startswith("."):
                entries.append(ModelEntry(kind, path.relative_to(root).as_posix(), path))
        return entries

    def find(self, kind: str, name: str) -> ModelEntry:
        """The entry of that name; names come from list(), so '../' tricks cannot reach other files."""
        for entry in self.list(kind):
            if name in (entry.name, entry.stem, self.title(entry)):
                return entry
        where = self.folder(kind)
        raise UserError(f"No {kind} named {name!r} in {where}. Put the file there and press the refresh button.")

    def short_hash(self, entry: ModelEntry, compute: bool = True) -> str | None:
        """A1111's short hash: the first 10 hex characters of the file's sha256 (diffusers folders have none)."""
        if not entry.path.is_file():
            return None
        full = self.cache.get(entry.path, "sha256")
        if full is None and compute:
            digest = hashlib.sha256()
            with open(entry.path, "rb") as f:
                while chunk := f.read(1 << 24):
                    digest.update(chunk)
            full = digest.hexdigest()
            self.cache.put(entry.path, "sha256", full)
        return full[:10] if full else None

    def family_label(self, entry: ModelEntry) -> str:
        """ "SD1.x", "SDXL inpainting"… from the tensors; cached, and cheap for safetensors (header only).
        ControlNets are labelled with the family of checkpoint they work with."""
        label = self.cache.get(entry.path, "family") if entry.path.is_file() else None
        if label:
            return label
        if entry.path.is_dir():
            return "diffusers"
        if entry.path.suffix.lower() != ".safetensors":
            return "?"  # pickles must be read whole to know; the family shows once the checkpoint is loaded
        try:
            shapes = read_shapes(entry.path)
            if entry.kind == "controlnet":
                label = detect_controlnet(shapes, entry.name).family.label
            else:
                label = detect_checkpoint(shapes, entry.name).description
        except UserError:
            label = "unsupported"
        self.cache.put(entry.path, "family", label)
        return label

    def remember_family(self, entry: ModelEntry, label: str) -> None:
        if entry.path.is_file():
            self.cache.put(entry.path, "family", label)

    def title(self, entry: ModelEntry) -> str:
        """A1111's dropdown title, "name [hash]" once the hash is known."""
        short = self.short_hash(entry, compute=False)
        return f"{entry.name} [{short}]" if short else entry.name
