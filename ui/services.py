"""The objects the UI talks to, built once by app.py and handed to every tab."""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path

from core.engine import Engine
from core.errors import UserError
from core.events import JobControl
from core.outputs import OutputWriter
from core.registry import ModelRegistry
from core.settings import Settings, resolve_folder


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


# Read once at start-up: changing them means rebuilding the registry and caches, so the Settings tab says so.
RESTART_SETTINGS = {
    "models_dir": "Models folder",
    "cache_dir": "Cache folder",
    "controlnet_unit_count": "Number of ControlNet units",
}


@dataclass
class Services:
    engine: Engine
    registry: ModelRegistry
    settings: Settings
    settings_path: Path
    base_dir: Path  # relative folders in the settings are taken from here
    served_folders: list[str]  # the list given to Gradio's launch(allowed_paths=…): output folders it may serve
    ui_secret: str = ""  # the key the browser's remembered values are encrypted with
    jobs: SessionJobs = field(default_factory=SessionJobs)

    def apply_settings(self, new: Settings) -> list[str]:
        """Validate, save to the settings file and apply at once; returns notes for what waits for a restart."""
        new.validated()
        outputs = resolve_folder(new.outputs_dir, self.base_dir)
        try:
            outputs.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"Cannot use {outputs} as the output folder: {exc.strerror or exc}.") from exc
        old = self.settings
        later = [label for name, label in RESTART_SETTINGS.items() if getattr(new, name) != getattr(old, name)]
        self.settings.update(asdict(new))
        self.settings.save(self.settings_path)
        self.engine.outputs = OutputWriter(outputs, self.engine.outputs.save_control_maps)
        if str(outputs) not in self.served_folders:
            # Gradio reads this list at each request, so the gallery can show images saved in the new folder.
            self.served_folders.append(str(outputs))
        return [f"{label}: takes effect after a restart." for label in later]
