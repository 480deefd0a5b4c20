"""The small "shapes" model family that ships in models/ (trained by training/), so a new install makes pictures."""

from __future__ import annotations

from core.registry import ModelRegistry
from core.settings import Settings

STARTER_CHECKPOINT = "shapes/shapes-sd1.safetensors"  # under models/Stable-diffusion
STARTER_CONTROLNET = "shapes-canny.safetensors"
STARTER_LORA = "shapes-striped"
STARTER_RESOLUTION = 128  # what it was trained at: 512 px would take longer and show a tiled scene


def prefer_users_checkpoints(names: list[str]) -> list[str]:
    """The same names with the shipped one last: any checkpoint of the user's own is the better default."""
    return sorted(names, key=lambda name: name == STARTER_CHECKPOINT)


def first_start_defaults(settings: Settings, checkpoint: str | None) -> None:
    """Without a settings file, new pages on the shipped model start at its own size."""
    if checkpoint == STARTER_CHECKPOINT:
        settings.default_width = settings.default_height = STARTER_RESOLUTION


def default_checkpoint(registry: ModelRegistry, preferred: str = "") -> str | None:
    """The settings' default checkpoint when it is there, else the first one that looks loadable (the user's own
    before the shipped shapes model)."""
    entries = registry.list("checkpoint")
    if preferred in (e.name for e in entries):
        return preferred
    usable = prefer_users_checkpoints([e.name for e in entries if registry.family_label(e) != "unsupported"])
    return (usable or [e.name for e in entries] or [None])[0]
