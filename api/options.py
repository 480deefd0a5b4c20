"""A1111's GET/POST options: one flat dict. The keys its clients use map onto our Settings; every other key is
kept as sent (clients such as Open WebUI POST back the whole dict they read) and given back, with no effect.
Folder options (outdir_samples…) are among those kept without effect: what the server writes and serves is the
owner's to choose at start-up, never a request's."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from api.translate import checkpoint_name, vae_name
from core.errors import UserError
from core.registry import ModelRegistry
from core.settings import Settings

MAX_OPTIONS_BYTES = 256 * 1024  # the kept options, as JSON (A1111's whole options dict is about 30 KB)
MAX_OPTION_KEYS = 2_000

# Options that are Settings fields under another name: (settings field, type).
SETTINGS_OPTIONS = {
    "sd_checkpoints_limit": ("model_cache_size", int),
    "show_progress_every_n_steps": ("preview_every_n_steps", int),
}
# A1111's live preview types, and ours.
PREVIEW_TYPES = {"Approx NN": "Approximate", "Approx cheap": "Approximate", "TAESD": "TAESD", "Full": "Full VAE"}


def read_options(settings: Settings, registry: ModelRegistry, default_checkpoint: str | None) -> dict[str, Any]:
    options: dict[str, Any] = {"sd_vae": "Automatic", "CLIP_stop_at_last_layers": 1, **settings.api_options}
    checkpoint = settings.default_checkpoint or default_checkpoint
    if checkpoint:
        try:
            entry = registry.find("checkpoint", checkpoint)
            options["sd_model_checkpoint"] = registry.title(entry)
            options["sd_checkpoint_hash"] = registry.cache.get(entry.path, "sha256") if entry.path.is_file() else None
        except UserError:
            options["sd_model_checkpoint"] = checkpoint
    preview = settings.preview_method
    options.update(
        samples_format="png",
        sd_checkpoints_limit=settings.model_cache_size,
        show_progress_every_n_steps=settings.preview_every_n_steps if preview != "None" else -1,
        live_previews_enable=preview != "None",
        show_progress_type=next((key for key, value in PREVIEW_TYPES.items() if value == preview), "Approx NN"),
        control_net_unit_count=settings.controlnet_unit_count,
    )
    return options


def apply_options(values: dict[str, Any], settings: Settings, registry: ModelRegistry) -> Settings:
    """The Settings after a POST of `values`: known options checked (an unknown checkpoint is a UserError naming
    the choices) and mapped; the rest kept. Returns a new Settings for Services.apply_settings to validate and save."""
    changed = replace(settings, api_options=dict(settings.api_options))
    kept = changed.api_options
    no_previews = False
    for key, value in values.items():
        if key == "sd_model_checkpoint" and value:
            changed.default_checkpoint = checkpoint_name(registry, value)
            continue
        if key == "sd_vae" and value:
            kept[key] = vae_name(registry, value)
        elif key == "CLIP_stop_at_last_layers":
            kept[key] = _integer(key, value)
        elif key in SETTINGS_OPTIONS:
            name, kind = SETTINGS_OPTIONS[key]
            number = _integer(key, value)
            if key == "show_progress_every_n_steps" and number < 1:  # A1111's -1: no previews
                no_previews = True
                continue
            setattr(changed, name, kind(number))
        elif key == "show_progress_type" and value in PREVIEW_TYPES:
            changed.preview_method = PREVIEW_TYPES[value]
        elif key == "live_previews_enable" and value is False:
            no_previews = True
        elif key == "live_previews_enable" and value is True and changed.preview_method == "None":
            changed.preview_method = "Approximate"
        elif key in ("sd_checkpoint_hash", "samples_format", "live_previews_enable", "control_net_unit_count"):
            continue  # read-only here (read back from GET, so a POST of the whole dict carries them)
        else:
            kept[key] = value
    if no_previews:  # whatever preview type the same dict names
        changed.preview_method = "None"
    size = len(json.dumps(kept, default=str))
    if len(kept) > MAX_OPTION_KEYS or size > MAX_OPTIONS_BYTES:
        raise UserError(f"The options are too large ({len(kept)} keys, {size:,} bytes); at most {MAX_OPTION_KEYS} "
                        f"keys and {MAX_OPTIONS_BYTES:,} bytes are kept.")  # fmt: skip
    return changed


def _integer(key: str, value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise UserError(f"{key} must be a whole number, not {value!r}.") from None
