"""Every job the web process has handed to the workers, from either front door (UI or REST API): which wait, which
run and how far each has got, so A1111's `progress`, `interrupt` and `skip` routes can report on and reach "the
current job" as A1111's single global state does, and so waiting jobs are bounded before they cost memory."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from core.errors import UserError
from core.events import Event, JobControl, Progress

MAX_JOBS_IN_FLIGHT = 64  # waiting + running, both doors; each waiting API call holds a thread and its images


@dataclass
class TrackedJob:
    """One job as the board sees it. `progress` is its latest Progress (with the live preview, if any)."""

    number: int
    origin: str  # "ui" or "api"
    control: JobControl
    steps: int
    batch_count: int
    queued_at: float = field(default_factory=time.time)
    started_at: float | None = None  # when its first event arrived: it left the queue and runs in a worker
    progress: Progress | None = None
    notice: str = ""

    @property
    def running(self) -> bool:
        return self.started_at is not None

    @property
    def timestamp(self) -> str:
        """A1111's job_timestamp: when the job started (or was queued), as YYYYmmddHHMMSS."""
        return time.strftime("%Y%m%d%H%M%S", time.localtime(self.started_at or self.queued_at))


class JobBoard:
    """Thread-safe list of the jobs in flight. `track` wraps a job's events; the job is listed until they end."""

    def __init__(self, limit: int = MAX_JOBS_IN_FLIGHT, clock: Callable[[], float] = time.time):
        self.limit, self.clock = limit, clock
        self._jobs: list[TrackedJob] = []
        self._lock = threading.Lock()
        self._numbers = itertools.count(1)

    def admit(self, origin: str, control: JobControl, steps: int, batch_count: int) -> TrackedJob:
        """Lists a new job, or refuses it (UserError) when the queue is full: the caller has not spent anything yet."""
        with self._lock:
            if len(self._jobs) >= self.limit:
                raise UserError(f"The queue is full ({self.limit} jobs waiting or running); try again in a moment.")
            job = TrackedJob(next(self._numbers), origin, control, steps, batch_count, queued_at=self.clock())
            self._jobs.append(job)
            return job

    def track(self, job: TrackedJob, events: Iterator[Event]) -> Iterator[Event]:
        """The job's events, passed on unchanged while the board records them; the job leaves the board at the end
        (finished, failed, or abandoned by its consumer)."""
        try:
            for event in events:
                with self._lock:
                    if job.started_at is None:
                        job.started_at = self.clock()
                    if isinstance(event, Progress):
                        job.progress = event
                yield event
        finally:
            with self._lock:
                self._jobs.remove(job)

    def current(self) -> TrackedJob | None:
        """The job A1111 would call current: the longest-running one (several run at once with several workers)."""
        with self._lock:
            running = [job for job in self._jobs if job.running]
            return min(running, key=lambda job: job.started_at) if running else None

    def waiting(self) -> int:
        with self._lock:
            return sum(not job.running for job in self._jobs)

    def in_flight(self) -> int:
        with self._lock:
            return len(self._jobs)
