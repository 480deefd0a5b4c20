"""The generation worker: one process per device, holding the engine (models, LoRAs, ControlNets, preprocessors).

Its main thread runs torch (a new Python thread per job was what cost the in-process design up to 2×); a reader
thread takes Interrupt and Skip from the pipe at any time, so they reach a running job within one step. The worker
exits when its pipe closes, so it never outlives the web process.

Messages, all plain data (core.wire):
  web → worker: {"op": "run", "job", "request" (styles already applied), "mode", "settings"}
                · {"op": "preprocess", "job", "unit", "image", "width", "height"} (a ControlNet map preview)
                · {"op": "extras", "job", "request", "save"} (Extras: upscale a picture)
                · {"op": "interrupt" | "skip", "job"}
  worker → web: {"op": "ready", "note"} · {"op": "failed", "error"} (it cannot start: a device that is not there)
                · {"op": "event", "job", "event"}
                · {"op": "done", "job", "error", "loaded", "seconds", "image" (a preprocess's map),
                   "png", "path", "text" (an Extras result: PNG bytes with its texts, its file if saved)}

Nothing heavy is imported at module level: the web process imports this module only to name `serve` as the
target of the processes it starts."""

from __future__ import annotations

import os
import queue
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

_DEVICE_NAME = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


def parse_devices(text: str) -> list[str]:
    """`--device cuda:0,cuda:1` → one worker per name. Only the spelling is checked here (the web process has no
    torch); a worker whose device is not there says so when it starts ({"op": "failed"})."""
    from core.errors import UserError

    devices = [device.strip() for device in text.split(",") if device.strip()] or ["auto"]
    for device in devices:
        if not _DEVICE_NAME.fullmatch(device):
            raise UserError(f"Unknown device {device!r}; use auto, cpu, cuda or cuda:N (several: cuda:0,cuda:1).")
    if len(set(devices)) < len(devices):
        raise UserError(f"--device {text}: a device is listed twice; each runs one generation worker.")
    return devices


@dataclass
class WorkerConfig:
    """What a worker needs to build its engine; plain data (it is sent to the new process)."""

    models_dir: str
    outputs_dir: str
    cache_dir: str
    device: str = "auto"
    precision: str = "auto"
    threads: int = 0  # torch intra-op threads; 0: torch's default
    memory_flag: str | None = None  # "medvram", "medvram-sdxl" or "lowvram" forces a memory level
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
    import signal

    # Ctrl+C in the terminal reaches the whole process group: the web process stops us by closing the pipe.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if config.threads:
        os.environ["OMP_NUM_THREADS"] = str(config.threads)  # before torch is imported
    import torch

    from core.errors import UserError

    if config.threads:
        torch.set_num_threads(config.threads)
    try:
        engine = _build_engine(config)
    except UserError as exc:  # restarting would not help: say why and stop
        connection.send({"op": "failed", "error": str(exc)})
        os._exit(0)
    send_lock = threading.Lock()

    def send(message: dict) -> None:
        with send_lock:
            connection.send(message)

    jobs: queue.Queue = queue.Queue()
    controls: dict[str, Any] = {}
    threading.Thread(target=_read, args=(connection, jobs, controls), daemon=True).start()
    send({"op": "ready", "note": engine.policy.note})
    while (message := jobs.get()) is not None:
        if message["op"] == "preprocess":
            _preprocess(engine, message, send)
        elif message["op"] == "extras":
            _extras(engine, message, send)
        else:
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
        elif op in ("preprocess", "extras"):
            jobs.put(message)
        elif op in ("interrupt", "skip") and (control := controls.get(message["job"])):
            control.interrupt() if op == "interrupt" else control.skip()


def _run(engine, config: WorkerConfig, message: dict, controls: dict, send) -> None:
    from core.errors import UserError
    from core.wire import request_from_wire

    job = message["job"]
    config.settings.update(message.get("settings") or {})
    sink = _PipeSink(send, job)
    started = time.perf_counter()
    try:
        request = request_from_wire(message["request"])
        engine.run_here(request, controls[job], sink, message.get("mode"), styles_applied=True)
    except UserError as exc:
        sink.error = exc
    finally:
        controls.pop(job, None)
    error = str(sink.error) if sink.error else None
    seconds = time.perf_counter() - started  # the job's own time: the web side's wall time less this is dispatch
    send({"op": "done", "job": job, "error": error, "loaded": engine.models.loaded_names(), "seconds": seconds})


def _preprocess(engine, message: dict, send) -> None:
    from core.errors import UserError
    from core.wire import image_from_wire, image_to_wire, unit_from_wire

    image, error = None, None
    try:
        unit = unit_from_wire(message["unit"])
        source = image_from_wire(message["image"], "control image")
        image = image_to_wire(engine.run_preprocessor(unit, source, message["width"], message["height"]))
    except UserError as exc:
        error = str(exc)
    except Exception as exc:  # the worker must survive anything a preprocessor does, as a job
        error = f"The preprocessor failed: {type(exc).__name__}: {exc}"
    send({"op": "done", "job": message["job"], "error": error, "image": image, "loaded": engine.models.loaded_names()})


def _extras(engine, message: dict, send) -> None:
    from core.errors import UserError
    from core.wire import extras_from_wire

    done: dict = {"op": "done", "job": message["job"], "error": None, "loaded": engine.models.loaded_names()}
    try:
        result = engine.run_extras(extras_from_wire(message["request"]), save=message["save"])
        done.update(png=result.png, path=str(result.path) if result.path else None, text=result.postprocessing)
    except UserError as exc:
        done["error"] = str(exc)
    except Exception as exc:  # the worker must survive anything an upscaler does, as a job
        done["error"] = f"The upscaler failed: {type(exc).__name__}: {exc}"
    send(done)


def _build_engine(config: WorkerConfig):
    from pathlib import Path

    from core.devices import choose_policy
    from core.engine import Engine
    from core.model_cache import ModelCache
    from core.outputs import OutputWriter
    from core.registry import HashCache, ModelRegistry
    from core.speed import SpeedOptions

    settings = config.settings
    registry = ModelRegistry(Path(config.models_dir), HashCache(Path(config.cache_dir) / "models.json"))
    policy = choose_policy(config.device, config.precision, config.memory_flag)
    models = ModelCache(
        registry,
        policy,
        capacity=lambda: int(settings.get("model_cache_size", 2)),
        sd2_prediction=lambda: settings.get("sd2_prediction_type", "v_prediction"),
        fp8_unet=lambda: SpeedOptions.from_settings(settings).fp8_unet,
    )
    outputs = OutputWriter(Path(config.outputs_dir), lambda: bool(settings.get("save_control_maps", False)))
    speed = lambda: SpeedOptions.from_settings(settings)  # noqa: E731

    def upscaler_tiles() -> tuple[int, int]:
        return int(settings.get("upscaler_tile", 192)), int(settings.get("upscaler_tile_overlap", 8))

    # No styles: the web process, which owns styles.csv, applies them.
    return Engine(models, outputs, policy, speed=speed, upscaler_tiles=upscaler_tiles)
