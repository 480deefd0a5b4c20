"""The dispatch interface: what the web process (UI, and later the REST API) hands jobs to.

Three things implement it: the local generation worker processes (core.worker_pool.WorkerPool, what app.py uses),
the in-process Engine (scripts and tests), and later Ray Serve replicas across machines. Every method takes and
gives plain values (a GenerationRequest, events, one image), and underneath the workers everything crosses as plain
data (core.wire), so a new implementation needs nothing else of the web process.

Imports no torch: the web process uses it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from PIL import Image

from core.events import Event, JobControl
from core.extras import ExtrasRequest
from core.request import ControlNetUnit, GenerationRequest


class Generator(Protocol):
    @property
    def ready(self) -> bool:
        """True once a job can start without waiting for a model process to come up."""
        ...

    @property
    def problem(self) -> str | None:
        """Why no job can run (every worker failed to start, e.g. a device that is not there); None otherwise."""
        ...

    @property
    def parallel_jobs(self) -> int:
        """How many jobs run at the same time (one per device)."""
        ...

    def run(
        self, request: GenerationRequest, control: JobControl | None = None, mode: str | None = None
    ) -> Iterator[Event]:
        """Progress and Notice events, then one Result; UserError for a problem the user can fix. `mode` names the
        outputs folder as A1111 does ("txt2img", "img2img"). Interrupt and Skip arrive through `control`."""
        ...

    def run_preprocessor(self, unit: ControlNetUnit, image: Image.Image, width: int, height: int) -> Image.Image:
        """The unit's control map of `image`, as a job would make it (the ControlNet tab's preview)."""
        ...

    def run_extras(self, request: ExtrasRequest, save: bool) -> ExtrasResult:
        """Extras: the picture upscaled as the request says; saved under extras-images when `save`."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class ExtrasResult:
    png: bytes  # the result as PNG, with the source's parameters and the "postprocessing" text
    path: Path | None  # where it was saved, if it was
    postprocessing: str
