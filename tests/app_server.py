"""Starts app.py as a real server process on a free localhost port, and always stops it (used by API and browser
tests)."""

from __future__ import annotations

import contextlib
import ctypes
import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PR_SET_PDEATHSIG = 1  # prctl option: a signal for the child when its parent dies


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class RunningApp:
    url: str
    port: int
    work: Path  # holds outputs/, config.json and server.log
    process: subprocess.Popen

    @property
    def outputs(self) -> Path:
        return self.work / "outputs"

    @property
    def config(self) -> Path:
        return self.work / "config.json"

    def log(self) -> str:
        return (self.work / "server.log").read_text(errors="replace")


@contextlib.contextmanager
def running_app(
    models_dir: Path,
    work: Path,
    *extra_args: str,
    outputs_flag: bool = True,
    port: int | None = None,
    timeout: float = 120,
) -> Iterator[RunningApp]:
    """app.py on CPU with its own config and cache under `work` (and outputs, unless `outputs_flag` is False and
    the config says where); terminated (then killed) on exit, whatever happened."""
    work.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    command = [
        sys.executable,
        "app.py",
        "--port",
        str(port),
        "--models-dir",
        str(models_dir),
        *(["--outputs-dir", str(work / "outputs")] if outputs_flag else []),
        "--config",
        str(work / "config.json"),
        "--styles-file",
        str(work / "styles.csv"),
        "--device",
        "cpu",
        *extra_args,
    ]
    config = work / "config.json"
    if not config.exists():  # keep the hash cache and browser-state key out of the project's own cache folder
        config.write_text(json.dumps({"cache_dir": str(work / "cache")}))
    with open(work / "server.log", "a") as log:
        process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
        app = RunningApp(f"http://127.0.0.1:{port}/", port, work, process)
        try:
            _wait_for_port(app, port, timeout)
            yield app
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _die_with_parent() -> None:
    """Linux: the server gets SIGTERM if the test process is killed before its cleanup can run."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _wait_for_port(app: RunningApp, port: int, timeout: float) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if app.process.poll() is not None:
            raise RuntimeError("the app exited while starting:\n" + app.log())
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError("the app did not start in time:\n" + app.log())
