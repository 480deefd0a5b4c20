"""GenerationRequest: every parameter of one generation job, typed, defaulted and validated."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from core.errors import UserError

MAX_SIDE = 4096  # pixels; beyond this a single image would not fit in memory on consumer GPUs
MAX_PIXELS = 2048 * 2048 * 2  # total area limit for one image
MAX_STEPS = 150  # A1111's slider maximum
MAX_BATCH_SIZE = 16
MAX_BATCH_COUNT = 100
MAX_CLIP_SKIP = 12


@dataclass(frozen=True)
class GenerationRequest:
    """Inputs of one job, named as A1111 names them (its API uses the same field names)."""

    prompt: str = ""
    negative_prompt: str = ""
    checkpoint: str = ""  # a name from the models registry, e.g. "sd15/dreamshaper.safetensors"
    vae: str = "Automatic"  # "Automatic", "None", or a name from models/VAE
    sampler_name: str = "DPM++ 2M"
    scheduler: str = "Automatic"  # A1111's "Schedule type"
    steps: int = 20
    cfg_scale: float = 7.0
    width: int = 512
    height: int = 512
    seed: int = -1
    batch_size: int = 1
    n_iter: int = 1  # A1111's "Batch count"
    clip_skip: int = 1
    preview_method: str = "Approximate"  # "Full VAE", "Approximate" or "None"
    preview_every_n_steps: int = 2

    def validated(self) -> GenerationRequest:
        """Return self when every value is usable, else raise UserError saying what to change."""
        # Imported here so the request module stays importable without torch/diffusers.
        from core.previews import PREVIEW_METHODS
        from core.samplers import SAMPLERS, SCHEDULE_TYPES, check_choice

        problems = []
        for name, value in (("Width", self.width), ("Height", self.height)):
            if value % 8:
                problems.append(f"{name} {value} is not a multiple of 8.")
            if not 64 <= value <= MAX_SIDE:
                problems.append(f"{name} {value} is outside 64–{MAX_SIDE} px.")
        if self.width * self.height > MAX_PIXELS:
            problems.append(f"{self.width}x{self.height} is too large (at most {MAX_PIXELS:,} pixels).")
        if not 1 <= self.steps <= MAX_STEPS:
            problems.append(f"Sampling steps must be 1–{MAX_STEPS}, not {self.steps}.")
        if not 0 <= self.cfg_scale <= 100:
            problems.append(f"CFG scale must be 0–100, not {self.cfg_scale}.")
        if not 1 <= self.batch_size <= MAX_BATCH_SIZE:
            problems.append(f"Batch size must be 1–{MAX_BATCH_SIZE}, not {self.batch_size}.")
        if not 1 <= self.n_iter <= MAX_BATCH_COUNT:
            problems.append(f"Batch count must be 1–{MAX_BATCH_COUNT}, not {self.n_iter}.")
        if not 1 <= self.clip_skip <= MAX_CLIP_SKIP:
            problems.append(f"Clip skip must be 1–{MAX_CLIP_SKIP}, not {self.clip_skip}.")
        if not -1 <= self.seed < 2**32:
            problems.append(f"Seed must be -1 (random) or 0–{2**32 - 1}, not {self.seed}.")
        if self.sampler_name not in SAMPLERS:
            problems.append(f"Unknown sampler {self.sampler_name!r}; choose one of: {', '.join(SAMPLERS)}.")
        if self.scheduler not in SCHEDULE_TYPES:
            problems.append(f"Unknown schedule type {self.scheduler!r}; choose one of: {', '.join(SCHEDULE_TYPES)}.")
        if self.sampler_name in SAMPLERS and self.scheduler in SCHEDULE_TYPES:
            try:
                check_choice(self.sampler_name, self.scheduler)
            except UserError as exc:
                problems.append(str(exc))
        if self.preview_method not in PREVIEW_METHODS:
            problems.append(f"Unknown preview method {self.preview_method!r}.")
        if self.preview_every_n_steps < 1:
            problems.append("Preview interval must be at least 1 step.")
        if not self.checkpoint:
            problems.append("No checkpoint chosen.")
        if problems:
            raise UserError(" ".join(problems))
        return self

    def with_changes(self, **changes: Any) -> GenerationRequest:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> GenerationRequest:
        """Build from a dict (API payload, UI values), ignoring unknown keys and coercing number types."""
        known = {f.name: f for f in fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in values.items():
            if key not in known or value is None:
                continue
            kind = known[key].type
            try:
                if kind == "int":
                    kwargs[key] = int(value)
                elif kind == "float":
                    kwargs[key] = float(value)
                else:
                    kwargs[key] = str(value)
            except (TypeError, ValueError) as exc:
                raise UserError(f"{key} must be a number, not {value!r}.") from exc
        return cls(**kwargs)
