"""What a LoRA file is, without applying it: its format, the family it was trained for, A1111's hash, its name."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from core.checkpoint_files import read_shapes
from core.errors import UserError
from core.network_cards import NetworkCard, network_cards
from core.registry import ModelEntry, ModelRegistry

Shapes = dict[str, tuple[int, ...]]

# Key fragments of the LyCORIS / PEFT variants that diffusers' SD and SDXL LoRA loaders do not convert (checked in
# diffusers 0.42: they take lora_down/lora_up/alpha and dora_scale only), and the names users know them by.
_UNSUPPORTED_FORMATS = (
    (re.compile(r"\.hada_w1"), "LyCORIS LoHa"),
    (re.compile(r"\.lokr_w"), "LyCORIS LoKr"),
    (re.compile(r"\.on_input$"), "(IA)³"),
    (re.compile(r"\.oft_"), "OFT"),
    (re.compile(r"\.a1\.weight$"), "LyCORIS GLoRA"),
    (re.compile(r"\.lora_mid\."), "LyCORIS LoCon with CP decomposition"),
    (re.compile(r"\.[wb]_norm$"), "LyCORIS norm-layer"),
    (re.compile(r"\.diff(_b)?$"), "LyCORIS full-weight difference"),
)
_LORA_MARKERS = ("lora_down", "lora_A", "lora.down", "lora_linear_layer")
# sd-scripts names SDXL's UNet modules after the LDM layout, SD1/SD2's after diffusers'.
_SDXL_PREFIXES = ("lora_te1_", "lora_te2_", "lora_unet_input_blocks_", "lora_unet_output_blocks_", "text_encoder_2.")
_CROSS_ATTENTION_WIDTHS = {768: "SD1.x", 1024: "SD2.x", 2048: "SDXL"}
_TEXT_ENCODER_WIDTHS = {768: "SD1.x", 1024: "SD2.x"}


def unsupported_format(keys) -> str | None:
    """The name of the file's format when it is one this version cannot apply ("LyCORIS LoHa"…), else None."""
    keys = list(keys)
    for pattern, name in _UNSUPPORTED_FORMATS:
        if any(pattern.search(key) for key in keys):
            return name
    if not any(marker in key for key in keys for marker in _LORA_MARKERS):
        return "an unknown"
    return None


def family_of(shapes: Shapes) -> str | None:
    """The family label ("SD1.x", "SD2.x", "SDXL") a LoRA was trained for, from key names and widths, or None."""
    if any(key.startswith(_SDXL_PREFIXES) for key in shapes):
        return "SDXL"
    down = {key: shape for key, shape in shapes.items() if any(m in key for m in ("lora_down", "lora_A", "lora.down"))}
    for key, shape in down.items():
        # The cross-attention keys' input width is the text embedding's: 768, 1024 or 2048 in the real families.
        if "attn2" in key and ("to_k" in key or "to_v" in key) and shape[1] in _CROSS_ATTENTION_WIDTHS:
            return _CROSS_ATTENTION_WIDTHS[shape[1]]
    for key, shape in down.items():
        if ("lora_te_" in key or key.startswith("text_encoder.")) and shape[1] in _TEXT_ENCODER_WIDTHS:
            return _TEXT_ENCODER_WIDTHS[shape[1]]
    for key, shape in down.items():
        # Whatever the widths: SD1's transformer blocks project in with 1x1 convolutions, SD2's with linear layers.
        if "proj_in" in key:
            return "SD1.x" if len(shape) == 4 else "SD2.x"
    return None


def lora_hash(registry: ModelRegistry, entry: ModelEntry) -> str:
    """A1111's short hash of a LoRA (12 hex): for .safetensors the "addnet" hash (sha256 of the bytes after the
    header, so editing metadata keeps it), else the whole file's sha256. Cached, so a file is hashed once."""
    path = entry.path
    safetensors = path.suffix.lower() == ".safetensors"
    field = "addnet" if safetensors else "sha256"
    full = registry.cache.get(path, field)
    if full is None:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            if safetensors:
                header_size = int.from_bytes(f.read(8), "little")
                f.seek(8 + header_size)
            while chunk := f.read(1 << 24):
                digest.update(chunk)
        full = digest.hexdigest()
        registry.cache.put(path, field, full)
    return full[:12]


def find_lora(registry: ModelRegistry, name: str) -> ModelEntry | None:
    """The LoRA a prompt tag names: by file stem (A1111's way), or by relative name with or without the extension."""
    name = name.strip().replace("\\", "/")
    entries = registry.list("lora")
    for entry in entries:
        if name in (entry.name, str(Path(entry.name).with_suffix("")).replace("\\", "/")):
            return entry
    return next((entry for entry in entries if entry.stem == name), None)


@dataclass(frozen=True)
class LoraInfo:
    """One LoRA for the UI's browser: its card (name, folder, preview) and the family it was trained for."""

    card: NetworkCard
    family: str  # "SD1.x", "SD2.x", "SDXL", or "" when unknown without reading the whole file


def list_loras(registry: ModelRegistry, search: str = "") -> list[LoraInfo]:
    """Every LoRA in models/Lora (subfolders too), with a family label where the safetensors header tells it."""
    entries = {entry.name: entry for entry in registry.list("lora")}
    cards = network_cards(registry, "lora", search)
    return [LoraInfo(card, browser_family(registry, entries[card.relative_name])) for card in cards]


def browser_family(registry: ModelRegistry, entry: ModelEntry) -> str:
    """The family from the safetensors header (cached); pickles would have to be read whole, so they show ""."""
    cached = registry.cache.get(entry.path, "lora_family")
    if cached is not None:
        return cached
    if entry.path.suffix.lower() != ".safetensors":
        return ""
    try:
        label = family_of(read_shapes(entry.path)) or ""
    except UserError:
        label = ""
    registry.cache.put(entry.path, "lora_family", label)
    return label
