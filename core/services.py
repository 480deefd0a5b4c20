"""The objects both front doors (the UI's tabs and the REST API) talk to, built once by app.py."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from core.dispatch import Generator
from core.events import Event, JobControl
from core.job_board import JobBoard
from core.registry import ModelRegistry
from core.served_files import checked_output_folder, never_served
from core.settings import Settings, resolve_folder
from core.styles import StyleLibrary


@dataclass
class SessionJobs:
    """The running job of each browser session, so its Interrupt and Skip buttons reach only that job."""

    _jobs: dict[str, JobControl] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self, session: str) -> JobControl:
        with self._lock:
            control = self._jobs[session] = JobControl()
            return control

    def get(self, session: str) -> JobControl | None:
        with self._lock:
            return self._jobs.get(session)

    def finish(self, session: str, control: JobControl) -> None:
        with self._lock:
            if self._jobs.get(session) is control:
                del self._jobs[session]


# Read once at start-up: changing them means rebuilding the registry and caches (or, for the output folder, what
# the server serves, which no request may widen), so the Settings tab says so.
RESTART_SETTINGS = {
    "outputs_dir": "Output folder",
    "models_dir": "Models folder",
    "cache_dir": "Cache folder",
    "controlnet_unit_count": "Number of ControlNet units",
}


@dataclass
class Services:
    generator: Generator  # runs the jobs: the generation worker processes (or, in scripts, an in-process Engine)
    registry: ModelRegistry
    settings: Settings
    settings_path: Path
    base_dir: Path  # relative folders in the settings are taken from here
    styles: StyleLibrary
    outputs_dir: Path  # where the jobs save images: the only folder of ours the server serves
    ui_secret: str = ""  # the key the browser's remembered values are encrypted with
    jobs: SessionJobs = field(default_factory=SessionJobs)
    board: JobBoard = field(default_factory=JobBoard)  # every job in flight, from the UI and the REST API

    def run_job(self, request, control: JobControl, mode: str, origin: str) -> Iterator[Event]:
        """The one way a job reaches the workers, from either front door (`origin`: "ui" or "api"): listed on the
        board (refused when the queue is full), then in the workers' one queue, first come first served."""
        job = self.board.admit(origin, control, request.steps, request.n_iter)
        return self.board.track(job, self.generator.run(request, control, mode=mode))

    def apply_settings(self, new: Settings) -> list[str]:
        """Validate, save to the settings file and apply at once; returns notes for what waits for a restart."""
        new.validated()
        old = self.settings
        later = [label for name, label in RESTART_SETTINGS.items() if getattr(new, name) != getattr(old, name)]
        if new.outputs_dir != old.outputs_dir:
            protected = never_served(old, self.base_dir, self.settings_path)
            checked_output_folder(resolve_folder(new.outputs_dir, self.base_dir), protected)
        self.settings.update(asdict(new))
        self.settings.save(self.settings_path)
        return [f"{label}: takes effect after a restart." for label in later]
