"""User settings: one dataclass, saved as a JSON file and loaded at start-up (never at import)."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from core.errors import UserError

log = logging.getLogger(__name__)

SD2_PREDICTION_TYPES = ("v_prediction", "epsilon")
MAX_MODEL_CACHE_SIZE = 10
SPEED_SETTINGS = ("channels_last", "fused_qkv", "compile_unet", "fp8_unet")  # read by core.speed in the worker


@dataclass
class Settings:
    """What a user can change and expect to survive a restart."""

    models_dir: str = "models"
    outputs_dir: str = "outputs"
    cache_dir: str = "cache"
    model_cache_size: int = 2  # checkpoints kept loaded; switching back to one of them is instant
    preview_method: str = "Approximate"  # one of core.request.PREVIEW_METHODS
    preview_every_n_steps: int = 2
    step_cache: str = "Off"  # a core.step_cache preset: "Off", "Fast" or "Faster"
    channels_last: bool = False  # core.speed's options (each also a flag, which forces it on)
    fused_qkv: bool = False
    compile_unet: bool = False
    fp8_unet: bool = False
    sd2_prediction_type: str = "v_prediction"  # for SD2.x checkpoints without a .yaml beside them
    default_checkpoint: str = ""
    default_sampler: str = "DPM++ 2M"
    default_schedule_type: str = "Automatic"
    default_steps: int = 20
    default_cfg_scale: float = 7.0
    default_width: int = 512
    default_height: int = 512
    # The size pages move to when a checkpoint of each family is chosen (core.native_size).
    native_size_sd1: int = 512
    native_size_sd2: int = 768
    native_size_sdxl: int = 1024
    controlnet_unit_count: int = 3  # ControlNet units shown in each tab (after a restart)
    save_control_maps: bool = False  # save ControlNet's detected maps next to the images
    upscaler_tile: int = 192  # model upscalers run in tiles of this many pixels (A1111's ESRGAN_tile)...
    upscaler_tile_overlap: int = 8  # ...overlapping by this many (ESRGAN_tile_overlap)
    # A1111 options the REST API was sent that map to nothing above (api.options): kept and given back as sent,
    # and the API jobs' defaults for VAE and clip skip ("sd_vae", "CLIP_stop_at_last_layers").
    api_options: dict = field(default_factory=dict)

    def validated(self) -> Settings:
        """Return self when every value is usable, else raise UserError listing each problem."""
        # The default generation values must make a valid request: one set of rules for both.
        from core.request import MAX_CONTROLNET_UNITS, PREVIEW_METHODS, GenerationRequest
        from core.step_cache import STEP_CACHE_PRESETS

        problems = []
        if self.preview_method not in PREVIEW_METHODS:
            problems.append(f"Unknown preview method {self.preview_method!r}.")
        if self.preview_every_n_steps < 1:
            problems.append("Preview interval must be at least 1 step.")
        if self.step_cache not in STEP_CACHE_PRESETS:
            problems.append(f"Step cache must be one of {', '.join(STEP_CACHE_PRESETS)}, not {self.step_cache!r}.")
        if not 1 <= self.model_cache_size <= MAX_MODEL_CACHE_SIZE:
            problems.append(f"Checkpoints kept loaded must be 1–{MAX_MODEL_CACHE_SIZE}, not {self.model_cache_size}.")
        if not 1 <= self.controlnet_unit_count <= MAX_CONTROLNET_UNITS:
            problems.append(f"ControlNet units must be 1–{MAX_CONTROLNET_UNITS}, not {self.controlnet_unit_count}.")
        for name in ("native_size_sd1", "native_size_sd2", "native_size_sdxl"):
            side = getattr(self, name)
            if side % 8 or not 64 <= side <= 2048:
                problems.append(f"The {name.rsplit('_', 1)[1].upper()} size must be a multiple of 8 in 64–2048.")
        if not 32 <= self.upscaler_tile <= 2048:
            problems.append(f"Upscaler tile size must be 32–2048 px, not {self.upscaler_tile}.")
        if not 0 <= self.upscaler_tile_overlap <= min(128, self.upscaler_tile // 2):
            problems.append("Upscaler tile overlap must be 0–128 px and at most half the tile.")
        if self.sd2_prediction_type not in SD2_PREDICTION_TYPES:
            problems.append(f"SD2 prediction type must be one of {', '.join(SD2_PREDICTION_TYPES)}.")
        for name, label in (("models_dir", "models"), ("outputs_dir", "output"), ("cache_dir", "cache")):
            if not getattr(self, name).strip():
                problems.append(f"The {label} folder must not be empty.")
        defaults = GenerationRequest(
            checkpoint="(any)",
            sampler_name=self.default_sampler,
            scheduler=self.default_schedule_type,
            steps=self.default_steps,
            cfg_scale=self.default_cfg_scale,
            width=self.default_width,
            height=self.default_height,
        )
        try:
            defaults.validated()
        except UserError as exc:
            problems.append(f"Default values: {exc}")
        if problems:
            raise UserError(" ".join(problems))
        return self

    def worker_settings(self) -> dict:
        """What a generation worker reads at each job (sent with it, so a change applies to the next job)."""
        return {
            "model_cache_size": self.model_cache_size,
            "sd2_prediction_type": self.sd2_prediction_type,
            "save_control_maps": self.save_control_maps,
            "upscaler_tile": self.upscaler_tile,
            "upscaler_tile_overlap": self.upscaler_tile_overlap,
            **{name: getattr(self, name) for name in SPEED_SETTINGS},
        }

    def update(self, values: dict) -> None:
        """Take validated values from another Settings in place, so objects holding this one see them at once."""
        for f in fields(self):
            if f.name in values:
                setattr(self, f.name, values[f.name])

    @classmethod
    def load(cls, path: Path) -> Settings:
        """Settings from a JSON file; a missing file gives defaults, unknown or mistyped keys are skipped."""
        path = Path(path)
        if not path.is_file():
            return cls()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            log.warning("Ignoring unreadable settings file %s: %s", path, exc)
            return cls()
        if not isinstance(data, dict):
            log.warning("Ignoring settings file %s: not a JSON object", path)
            return cls()
        return cls.from_values(data)

    @classmethod
    def from_values(cls, data: dict) -> Settings:
        """Settings from loose values (a JSON file, a form): known keys of the right type; whole floats
        count as ints and ints as floats; anything else keeps its default."""
        defaults = cls()
        values = {}
        for f in fields(cls):
            expected = type(getattr(defaults, f.name))
            value = data.get(f.name)
            if isinstance(value, bool) and expected is not bool:
                continue
            if expected is int and isinstance(value, float) and value.is_integer():
                value = int(value)
            if isinstance(value, expected) or (expected is float and isinstance(value, int)):
                values[f.name] = expected(value)
        return cls(**values)

    def save(self, path: Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2), encoding="utf-8")
        tmp.replace(path)


def resolve_folder(path: str, base: Path) -> Path:
    """A settings folder as an absolute path: relative ones are taken from the project folder, not the cwd."""
    folder = Path(path).expanduser()
    return folder if folder.is_absolute() else base / folder
