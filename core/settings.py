"""User settings: one dataclass, saved as a JSON file and loaded at start-up (never at import)."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, fields
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass
class Settings:
    """What a user can change and expect to survive a restart."""

    models_dir: str = "models"
    outputs_dir: str = "outputs"
    cache_dir: str = "cache"
    model_cache_size: int = 2  # checkpoints kept loaded; switching back to one of them is instant
    preview_method: str = "Approximate"  # "Approximate", "Full VAE" or "None"
    preview_every_n_steps: int = 2
    sd2_prediction_type: str = "v_prediction"  # for SD2.x checkpoints without a .yaml beside them
    default_checkpoint: str = ""
    default_sampler: str = "DPM++ 2M"
    default_schedule_type: str = "Automatic"
    default_steps: int = 20
    default_cfg_scale: float = 7.0
    default_width: int = 512
    default_height: int = 512

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
        defaults = cls()
        values = {}
        for f in fields(cls):
            expected = type(getattr(defaults, f.name))
            value = data.get(f.name)
            if isinstance(value, expected) or (expected is float and isinstance(value, int)):
                values[f.name] = expected(value)
        return cls(**values)

    def save(self, path: Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2), encoding="utf-8")
        tmp.replace(path)
