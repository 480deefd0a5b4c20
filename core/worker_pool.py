"""The web process's side of the generation workers: one process per device (core.worker), one queue in front.

`WorkerPool.run(request, control, mode)` is the same generator of events as `Engine.run`, so the UI (and later
the API) cannot tell where a job ran. Jobs go to a free worker, preferring one that already holds the job's
checkpoint. A worker that dies (a signal, a native crash, the OOM killer) or stops answering ends its job with a
clear message, is restarted, and the next job runs; what it was writing is removed, so no partial image is left.

This is the dispatch interface a distributed engine (Ray Serve replicas) implements later: `run` and `close`,
with requests and events as plain data underneath (core.wire)."""

from __future__ import annotations

import collections
import contextlib
import itertools
import logging
import multiprocessing
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from PIL import Image

from core.dispatch import ExtrasResult
from core.errors import UserError
from core.events import Event, JobControl, Result, final_result
from core.extras import ExtrasRequest
from core.outputs import remove_partial_files
from core.request import ControlNetUnit, GenerationRequest
from core.styles import StyleLibrary, with_styles
from core.wire import (
    event_from_wire,
    extras_to_wire,
    image_from_wire,
    image_to_wire,
    request_to_wire,
    unit_to_wire,
)
from core.worker import WorkerConfig, serve

log = logging.getLogger(__name__)

CRASH_MESSAGE = (
    "The generation worker stopped unexpectedly ({why}); it has been restarted. "
    "Your settings are kept: press Generate again."
)
MAX_FAILED_STARTS = 3  # a worker that dies this many times before it is ready is given up (its error is shown)


class _Worker:
    """One worker process, restarted whenever it dies. Its messages arrive on `messages` (one queue per process,
    so a job never reads what a restarted process says)."""

    def __init__(self, context, config: WorkerConfig, on_change: Callable[[], None]):
        self.context, self.config, self.on_change = context, config, on_change
        self.ready = self.busy = False
        self.closing = False
        self.failed: str | None = None
        self.failed_starts = 0
        self.loaded: list[str] = []
        self.note: str | None = None
        self.process = None
        self._send_lock = threading.Lock()
        self._start_lock = threading.Lock()  # a restart and a close never cross

    def start(self) -> None:
        with self._start_lock:
            if self.closing:
                return
            ours, theirs = self.context.Pipe()
            process = self.context.Process(target=serve, args=(theirs, self.config), daemon=True)
            process.start()
            theirs.close()
            self.process, self.connection, self.messages = process, ours, queue.Queue()
            threading.Thread(target=self._read, args=(ours, process, self.messages), daemon=True).start()

    def stop(self) -> None:
        """Closes the pipe (the worker exits when it sees that) and waits; kills what does not go."""
        with self._start_lock:
            self.closing = True
        if self.process is None:  # never started
            return
        self.connection.close()
        self.process.join(timeout=10)
        if self.process.is_alive():
            self.kill()

    def send(self, message: dict) -> None:
        with self._send_lock, contextlib.suppress(OSError, ValueError):  # it died: its reader reports how
            self.connection.send(message)

    def kill(self) -> None:
        self.process.kill()

    def _read(self, connection, process, messages: queue.Queue) -> None:
        while True:
            try:
                message = connection.recv()
            except (EOFError, OSError, TypeError):  # TypeError: the pipe was closed under recv() by stop()
                break
            op = message.get("op")
            if op == "ready":
                self.ready, self.note, self.failed_starts = True, message.get("note"), 0
                if self.note:
                    log.info("Generation worker for %s: %s", self.config.device, self.note)
                self.on_change()
            elif op == "failed":  # e.g. --device cuda without a GPU: restarting would not help
                self.failed = message["error"]
                log.error("The generation worker for %s cannot start: %s", self.config.device, self.failed)
            else:
                messages.put(message)
        process.join(timeout=10)
        was_ready, self.ready, self.loaded = self.ready, False, []
        messages.put({"op": "died", "why": _exit_reason(process.exitcode)})
        if self.closing or self.failed:
            self.on_change()
            return
        remove_partial_files(Path(self.config.outputs_dir))
        self.failed_starts = 0 if was_ready else self.failed_starts + 1
        if self.failed_starts >= MAX_FAILED_STARTS:
            why = _exit_reason(process.exitcode)
            self.failed = f"The generation worker for {self.config.device} could not start ({why}); see the log."
            log.error(self.failed)
        else:
            log.warning(
                "Generation worker for %s stopped (%s); restarting it",
                self.config.device,
                _exit_reason(process.exitcode),
            )
            self.start()
        self.on_change()


def _returned(events: Iterator) -> dict:
    """What a generator returns, after running it through (its events are not wanted)."""
    try:
        while True:
            next(events)
    except StopIteration as stop:
        return stop.value


def _exit_reason(exitcode: int | None) -> str:
    if exitcode is None:
        return "it did not exit"
    return f"signal {-exitcode}" if exitcode < 0 else f"exit code {exitcode}"


class WorkerPool:
    """Several workers behind one `run`. `settings()` gives the live settings each job carries to its worker."""

    def __init__(
        self,
        configs: list[WorkerConfig],
        styles: StyleLibrary | None = None,
        settings: Callable[[], dict] = dict,
        hang_seconds: float = 600,
        start: bool = True,
    ):
        context = multiprocessing.get_context("spawn")  # a fresh interpreter: no fork of the web server's threads
        self._changed = threading.Condition()
        self.workers = [_Worker(context, config, self._notify) for config in configs]
        self._line: collections.deque[int] = collections.deque()  # tickets of the jobs waiting for a worker
        self._tickets = itertools.count()
        self.styles, self.settings, self.hang_seconds = styles, settings, hang_seconds
        self.last_job_seconds: float | None = None  # what the latest job took inside its worker (for bench/)
        if start:
            self.start()

    def start(self) -> None:
        """Starts the worker processes (in the background: `ready` says when the first can take a job)."""
        for worker in self.workers:
            worker.start()

    def _notify(self) -> None:
        with self._changed:
            self._changed.notify_all()

    @property
    def ready(self) -> bool:
        return any(worker.ready for worker in self.workers)

    @property
    def problem(self) -> str | None:
        if self.workers and all(worker.failed for worker in self.workers):
            return " ".join(worker.failed for worker in self.workers)
        return None

    @property
    def parallel_jobs(self) -> int:
        return len(self.workers)

    def run(
        self, request: GenerationRequest, control: JobControl | None = None, mode: str | None = None
    ) -> Iterator[Event]:
        request = with_styles(request.validated(), self.styles)
        message = {"op": "run", "request": request_to_wire(request), "mode": mode}
        yield from self._dispatch(message, request.checkpoint, control or JobControl())

    def run_preprocessor(self, unit: ControlNetUnit, image: Image.Image, width: int, height: int) -> Image.Image:
        """The control map, made by a worker (which holds the annotators) between its jobs."""
        message = {"op": "preprocess", "unit": unit_to_wire(unit), "image": image_to_wire(image)}
        events = self._dispatch({**message, "width": width, "height": height}, None, JobControl())
        done = _returned(events)
        return image_from_wire(done["image"], "control map")

    def run_extras(self, request: ExtrasRequest, save: bool) -> ExtrasResult:
        """Extras in a worker (which holds the upscalers), in the same line as the jobs."""
        message = {"op": "extras", "request": extras_to_wire(request.validated()), "save": save}
        done = _returned(self._dispatch(message, None, JobControl()))
        return ExtrasResult(done["png"], Path(done["path"]) if done.get("path") else None, done["text"])

    def _dispatch(self, message: dict, checkpoint: str | None, control: JobControl) -> Iterator[Event]:
        """Sends one job to a free worker and yields its events; returns the worker's "done" message."""
        worker = self._acquire(checkpoint)
        job, messages = uuid.uuid4().hex, worker.messages
        worker.send({**message, "job": job, "settings": self.settings()})
        finished = False
        try:
            done = yield from self._events(worker, job, messages, control)
            finished = True
            return done
        except UserError:
            finished = True
            raise
        finally:
            if finished:
                self._release(worker)
            else:  # the consumer went away (a closed tab): stop the job, free the worker once it has stopped
                worker.send({"op": "interrupt", "job": job})
                threading.Thread(target=self._drain, args=(worker, messages), daemon=True).start()

    def _events(self, worker: _Worker, job: str, messages: queue.Queue, control: JobControl):
        """The job's events as they come; Interrupt and Skip are sent on at once (the control wakes this loop, so
        nothing polls while the worker computes: on a small machine every wake-up takes a core from torch)."""
        unwatch = control.watch(lambda: messages.put({"op": "control"}))
        interrupted, answered = False, time.monotonic()
        try:
            while True:
                if control.interrupted and not interrupted:
                    worker.send({"op": "interrupt", "job": job})
                    interrupted = True
                if control.take_skip():
                    worker.send({"op": "skip", "job": job})
                try:
                    message = messages.get(timeout=max(0.0, answered + self.hang_seconds - time.monotonic()))
                except queue.Empty:
                    worker.ready = False  # no job goes to it before its replacement says it is ready
                    worker.kill()
                    raise UserError(CRASH_MESSAGE.format(why=f"no answer for {self.hang_seconds:g} s")) from None
                op = message["op"]
                if op == "control":
                    continue
                answered = time.monotonic()
                if op == "event":
                    yield event_from_wire(message["event"])
                elif op == "done":
                    worker.loaded = message.get("loaded") or []
                    self.last_job_seconds = message.get("seconds")
                    if message["error"]:
                        raise UserError(message["error"])
                    return message
                elif op == "died":
                    raise UserError(CRASH_MESSAGE.format(why=message["why"]))
        finally:
            unwatch()

    def _drain(self, worker: _Worker, messages: queue.Queue) -> None:
        while True:
            try:
                message = messages.get(timeout=self.hang_seconds)
            except queue.Empty:
                worker.ready = False
                worker.kill()
                break
            if message["op"] in ("done", "died"):
                worker.loaded = message.get("loaded") or worker.loaded
                break
        self._release(worker)

    def _acquire(self, checkpoint: str | None) -> _Worker:
        """The next free worker, first come first served: jobs from the UI and the REST API wait in this one line
        (the oldest takes the worker that holds its checkpoint, if that one is free)."""
        with self._changed:
            ticket = next(self._tickets)
            self._line.append(ticket)
            try:
                while True:
                    free = [w for w in self.workers if w.ready and not w.busy]
                    if free and self._line[0] == ticket:
                        chosen = next((w for w in free if checkpoint in w.loaded), free[0])
                        chosen.busy = True
                        return chosen
                    if self.problem:
                        raise UserError(self.problem)
                    self._changed.wait(timeout=1)
            finally:
                self._line.remove(ticket)
                self._changed.notify_all()  # the next in line may take another free worker

    def _release(self, worker: _Worker) -> None:
        with self._changed:
            worker.busy = False
            self._changed.notify_all()

    def status(self) -> list[dict]:
        """Each worker's device, state and loaded checkpoints (shown by the REST API's memory route)."""
        return [
            {"device": w.config.device, "ready": w.ready, "busy": w.busy, "failed": w.failed, "loaded": list(w.loaded)}
            for w in self.workers
        ]

    def generate(self, request: GenerationRequest, control: JobControl | None = None) -> Result:
        """Run to completion and return the Result (its images hold paths, not pixels)."""
        return final_result(self.run(request, control))

    def close(self) -> None:
        for worker in self.workers:
            worker.stop()
