"""The objects the UI talks to, built once by app.py and handed to every tab."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

from core.engine import Engine
from core.events import JobControl
from core.registry import ModelRegistry
from core.settings import Settings


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


@dataclass
class Services:
    engine: Engine
    registry: ModelRegistry
    settings: Settings
    settings_path: Path
    jobs: SessionJobs = field(default_factory=SessionJobs)
