"""The size a checkpoint draws best at (its family's training size, per the settings; the shipped shapes model's
own), so new pages and a checkpoint switch can start there, and a size far from it gets a hint. Torch-free."""

from __future__ import annotations

from core.errors import UserError
from core.registry import ModelRegistry
from core.settings import Settings
from core.starter import STARTER_CHECKPOINT, STARTER_RESOLUTION

FAR = (0.5, 2.25)  # a pixel area under half or over 2.25× the native one is "far" from it


def native_size(registry: ModelRegistry, checkpoint: str | None, settings: Settings) -> tuple[str, int] | None:
    """(family label, side) of a checkpoint, or None when its family is not known without loading it."""
    if not checkpoint:
        return None
    if checkpoint == STARTER_CHECKPOINT:
        return "the shapes model", STARTER_RESOLUTION
    try:
        label = registry.family_label(registry.find("checkpoint", checkpoint))
    except UserError:
        return None
    for prefix, side in (("SDXL", settings.native_size_sdxl), ("SD2", settings.native_size_sd2),
                         ("SD1", settings.native_size_sd1)):  # fmt: skip
        if label.startswith(prefix):
            return prefix if prefix == "SDXL" else f"{prefix}.x", side
    return None


def size_hint(native: tuple[str, int] | None, width: int, height: int) -> str:
    """A line for under the size sliders when the size is far from the checkpoint's own; "" otherwise."""
    if native is None or not width or not height:
        return ""
    family, side = native
    ratio = (width * height) / (side * side)
    if FAR[0] <= ratio <= FAR[1]:
        return ""
    return f"{family} draws best near {side}×{side}; {width}×{height} is far from it (nothing is refused)."
