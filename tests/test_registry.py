"""The models folder: A1111 layout, subfolders, safe names, family labels and the on-disk hash cache."""

from __future__ import annotations

import hashlib
import json

import pytest

from core.errors import UserError
from core.registry import HashCache, ModelRegistry
from tests.fixtures.tiny_models import write_checkpoint, write_diffusers_folder


@pytest.fixture
def registry(tmp_path):
    root = tmp_path / "models"
    write_checkpoint(root / "Stable-diffusion" / "a.safetensors", "SD1")
    write_checkpoint(root / "Stable-diffusion" / "xl" / "b.safetensors", "SDXL")
    write_checkpoint(root / "Stable-diffusion" / "c.ckpt", "SD1", fmt="ckpt")
    write_diffusers_folder(root / "Stable-diffusion" / "d-diffusers", "SD1")
    (root / "Stable-diffusion" / "notes.txt").write_text("not a model")
    return ModelRegistry(root, HashCache(tmp_path / "cache" / "models.json"))


def test_lists_files_and_diffusers_folders_in_subfolders(registry):
    names = [e.name for e in registry.list("checkpoint")]
    assert names == ["a.safetensors", "c.ckpt", "d-diffusers", "xl/b.safetensors"]
    assert registry.list("lora") == []


def test_family_labels_from_the_header(registry):
    labels = {e.name: registry.family_label(e) for e in registry.list("checkpoint")}
    assert labels["a.safetensors"] == "SD1.x"
    assert labels["xl/b.safetensors"] == "SDXL"
    assert labels["c.ckpt"] == "?"  # a pickle is only read when loaded


def test_short_hash_is_a1111s_and_cached_on_disk(registry, tmp_path):
    entry = registry.find("checkpoint", "a.safetensors")
    assert registry.short_hash(entry, compute=False) is None  # lazy
    expected = hashlib.sha256(entry.path.read_bytes()).hexdigest()
    assert registry.short_hash(entry) == expected[:10]
    cached = json.loads((tmp_path / "cache" / "models.json").read_text())
    assert expected in json.dumps(cached)
    # A new registry (a restart) reads the cache instead of hashing again.
    again = ModelRegistry(registry.models_dir, HashCache(tmp_path / "cache" / "models.json"))
    assert again.short_hash(entry, compute=False) == expected[:10]
    assert again.title(entry) == f"a.safetensors [{expected[:10]}]"


def test_hash_cache_invalidates_when_the_file_changes(registry):
    entry = registry.find("checkpoint", "a.safetensors")
    first = registry.short_hash(entry)
    write_checkpoint(entry.path, "SD1", seed=1)
    assert registry.short_hash(entry, compute=False) is None
    assert registry.short_hash(entry) != first


@pytest.mark.parametrize("name", ["../a.safetensors", "/etc/passwd", "notes.txt", "xl/../../x"])
def test_names_cannot_escape_the_folder(registry, name):
    with pytest.raises(UserError, match="No checkpoint named"):
        registry.find("checkpoint", name)


def test_find_accepts_name_stem_or_title(registry):
    entry = registry.find("checkpoint", "xl/b.safetensors")
    assert registry.find("checkpoint", "b").path == entry.path
