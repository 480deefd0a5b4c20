"""The generation worker: one process per device, holding the engine (models, LoRAs, ControlNets, preprocessors).

Its main thread runs torch (a new Python thread per job was what cost the in-process design up to 2×); a reader
thread takes Interrupt and Skip from the pipe at any time, so they reach a running job within one step. The worker
exits when its pipe closes, so it never outlives the web process.

Messages, all plain data (core.wire):
  web → worker: {"op": "run", "job", "request" (styles already applied), "mode", "settings"}
                · {"op": "interrupt" | "skip", "job"}
  worker → web: {"op": "ready", "note"} · {"op": "event", "job", "event"} · {"op": "done", "job", "error", "loaded"}

Nothing heavy is imported at module level: the web process imports this module only to name `serve` as the
target of the processes it starts."""

from __future__ import annotations

import os
import queue
import threading
from dataclasses import dataclass, field
from typing import Any


@dataclass
class WorkerConfig:
    """What a worker needs to build its engine; plain data (it is sent to the new process)."""

    models_dir: str
    outputs_dir: str
    cache_dir: str
    device: str = "auto"
    precision: str = "auto"
    threads: int = 0  # torch intra-op threads; 0: torch's default
    settings: dict[str, Any] = field(default_factory=dict)  # the live settings; each job sends the current ones


class _PipeSink:
    """The engine's event sink in a worker: each event goes down the pipe as plain data, tagged with its job."""

    def __init__(self, send, job: str):
        self.send, self.job = send, job
        self.error: BaseException | None = None

    def put(self, event) -> None:
        from core.wire import event_to_wire

        self.send({"op": "event", "job": self.job, "event": event_to_wire(event)})

    def close(self, error: BaseException | None = None) -> None:
        self.error = error


def serve(connection, config: WorkerConfig) -> None:
    """The worker process's entry point."""
    if config.threads:
        os.environ["OMP_NUM_THREADS"] = str(config.threads)  # before torch is imported
    import torch

    if config.threads:
        torch.set_num_threads(config.threads)
    engine = _build_engine(config)
    send_lock = threading.Lock()

    def send(message: dict) -> None:
        with send_lock:
            connection.send(message)

    jobs: queue.Queue = queue.Queue()
    controls: dict[str, Any] = {}
    threading.Thread(target=_read, args=(connection, jobs, controls), daemon=True).start()
    send({"op": "ready", "note": engine.policy.note})
    while (message := jobs.get()) is not None:
        _run(engine, config, message, controls, send)
    os._exit(0)  # the pipe closed: the web process is gone or let us go


def _read(connection, jobs: queue.Queue, controls: dict) -> None:
    """The pipe's only reader: jobs go to the main thread; Interrupt and Skip act on the running job at once."""
    from core.events import JobControl

    while True:
        try:
            message = connection.recv()
        except (EOFError, OSError):
            jobs.put(None)
            for control in list(controls.values()):
                control.interrupt()
            return
        op = message.get("op")
        if op == "run":
            controls[message["job"]] = JobControl()
            jobs.put(message)
        elif op in ("interrupt", "skip") and (control := controls.get(message["job"])):
            control.interrupt() if op == "interrupt" else control.skip()


def _run(engine, config: WorkerConfig, message: dict, controls: dict, send) -> None:
    from core.errors import UserError
    from core.wire import request_from_wire

    job = message["job"]
    config.settings.update(message.get("settings") or {})
    sink = _PipeSink(send, job)
    try:
        request = request_from_wire(message["request"])
        engine.run_here(request, controls[job], sink, message.get("mode"), styles_applied=True)
    except UserError as exc:
        sink.error = exc
    finally:
        controls.pop(job, None)
    error = str(sink.error) if sink.error else None
    send({"op": "done", "job": job, "error": error, "loaded": engine.models.loaded_names()})


def _build_engine(config: WorkerConfig):
    from pathlib import Path

    from core.devices import choose_policy
    from core.engine import Engine
    from core.model_cache import ModelCache
    from core.outputs import OutputWriter
    from core.registry import HashCache, ModelRegistry

    settings = config.settings
    registry = ModelRegistry(Path(config.models_dir), HashCache(Path(config.cache_dir) / "models.json"))
    policy = choose_policy(config.device, config.precision)
    models = ModelCache(
        registry,
        policy,
        capacity=lambda: int(settings.get("model_cache_size", 2)),
        sd2_prediction=lambda: settings.get("sd2_prediction_type", "v_prediction"),
    )
    outputs = OutputWriter(Path(config.outputs_dir), lambda: bool(settings.get("save_control_maps", False)))
    return Engine(models, outputs, policy)  # styles are applied by the web process, which owns styles.csv
