"""The shipped shapes checkpoint is the default only when models/ holds no other, and then pages start at its size."""

from __future__ import annotations

from core.registry import HashCache, ModelRegistry
from core.settings import Settings
from core.starter import STARTER_CHECKPOINT, STARTER_RESOLUTION, default_checkpoint, first_start_defaults
from tests.fixtures.tiny_models import write_checkpoint


def registry_with(tmp_path, *names: str) -> ModelRegistry:
    for name in names:
        write_checkpoint(tmp_path / "Stable-diffusion" / name, "SD1")
    return ModelRegistry(tmp_path, HashCache(tmp_path / "cache.json"))


def test_the_shipped_checkpoint_is_the_default_when_alone(tmp_path):
    registry = registry_with(tmp_path, STARTER_CHECKPOINT)
    assert default_checkpoint(registry) == STARTER_CHECKPOINT
    settings = Settings()
    first_start_defaults(settings, default_checkpoint(registry))
    assert (settings.default_width, settings.default_height) == (STARTER_RESOLUTION, STARTER_RESOLUTION)


def test_a_checkpoint_of_the_users_own_comes_first(tmp_path):
    # "a-mine" sorts before "shapes/…" and "z-mine" after it: either way the user's own file wins.
    for other in ("a-mine.safetensors", "z-mine.safetensors"):
        registry = registry_with(tmp_path / other, STARTER_CHECKPOINT, other)
        assert default_checkpoint(registry) == other
        settings = Settings()
        first_start_defaults(settings, default_checkpoint(registry))
        assert (settings.default_width, settings.default_height) == (512, 512)


def test_the_settings_choice_still_wins(tmp_path):
    registry = registry_with(tmp_path, STARTER_CHECKPOINT, "mine.safetensors")
    assert default_checkpoint(registry, STARTER_CHECKPOINT) == STARTER_CHECKPOINT
