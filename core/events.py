"""What the engine tells its consumers while a job runs: progress with previews, notices, and the result."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from PIL import Image


@dataclass(frozen=True)
class Progress:
    step: int  # steps done in the current image batch
    total_steps: int
    batch_index: int  # which batch of the batch count (0-based)
    batch_count: int
    elapsed: float  # seconds since the job started
    eta: float | None  # seconds left for the whole job, once it can be estimated
    preview: list[Image.Image] | None = None
    pass_index: int = 0  # Hires fix: 0 for the first pass, 1 for the second (of `passes`)
    passes: int = 1

    @property
    def fraction(self) -> float:
        """The whole job's share done, each pass of each batch counting alike."""
        done = (self.batch_index * self.passes + self.pass_index) + self.step / max(1, self.total_steps)
        return done / max(1, self.batch_count * self.passes)


@dataclass(frozen=True)
class Notice:
    """Something the user should know that does not stop the job (CPU fallback, a model being loaded…)."""

    message: str


@dataclass(frozen=True)
class GeneratedImage:
    image: Image.Image | None  # None where the job ran in a worker process: the pixels are in the file at `path`
    seed: int
    infotext: str
    path: Path | None


@dataclass(frozen=True)
class Result:
    images: list[GeneratedImage]
    interrupted: bool = False
    notices: list[str] = field(default_factory=list)


Event = Progress | Notice | Result


def final_result(events: Iterable[Event]) -> Result:
    """The Result a job's events end with (for scripts, tests and the API, which want no progress)."""
    result = None
    for event in events:
        if isinstance(event, Result):
            result = event
    if result is None:
        raise RuntimeError("the job ended without a result")
    return result


class JobControl:
    """Flags a running job checks at every step: Interrupt stops the job, Skip ends the current batch."""

    def __init__(self) -> None:
        self._interrupt = threading.Event()
        self._skip = threading.Event()
        self._listeners: list[Callable[[], None]] = []

    def interrupt(self) -> None:
        self._interrupt.set()
        self._changed()

    def skip(self) -> None:
        self._skip.set()
        self._changed()

    def watch(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Calls `listener` after each Interrupt or Skip (a job in another process is told at once, with no
        polling); returns the function that stops it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def _changed(self) -> None:
        for listener in list(self._listeners):
            listener()

    @property
    def interrupted(self) -> bool:
        return self._interrupt.is_set()

    def take_skip(self) -> bool:
        """True once per Skip press: the batch that sees it ends early, the next ones run."""
        skipped = self._skip.is_set()
        self._skip.clear()
        return skipped

    @property
    def should_stop_batch(self) -> bool:
        return self._interrupt.is_set() or self._skip.is_set()


class EventSink(Protocol):
    """Where a running job's events go: a channel to another thread, or a pipe to another process."""

    def put(self, event: Event) -> None: ...

    def close(self, error: BaseException | None = None) -> None: ...


class EventChannel:
    """Worker thread → consumer. A newer Progress replaces one not yet taken ("latest preview wins")."""

    _DONE = object()

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._queue: deque = deque()
        self._progress: Progress | None = None
        self._error: BaseException | None = None

    def put(self, event: Event) -> None:
        with self._cond:
            if isinstance(event, Progress):
                self._progress = event
            else:
                self._progress = None  # a later event makes an unsent progress stale
                self._queue.append(event)
            self._cond.notify()

    def close(self, error: BaseException | None = None) -> None:
        with self._cond:
            self._error = error
            self._queue.append(self._DONE)
            self._cond.notify()

    def __iter__(self):
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._queue or self._progress is not None)
                if self._progress is not None:
                    event, self._progress = self._progress, None
                else:
                    event = self._queue.popleft()
            if event is self._DONE:
                if self._error is not None:
                    raise self._error
                return
            yield event
