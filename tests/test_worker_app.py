"""Through the running app: jobs run in a generation worker process and the web process never loads torch;
killing the worker mid-job leaves the server serving, gives the job a clear message, keeps the waiting jobs (which
are told their place in the queue), and the next job works with no partial file left in the outputs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from gradio_client import Client
from PIL import Image

from tests.app_server import running_app
from tests.security.endpoints import arguments, named_endpoints, small_png


def worker_pids(server_pid: int) -> list[int]:
    """The app's generation workers: its children started by multiprocessing's spawn (not its resource tracker)."""
    pids = []
    for task in Path(f"/proc/{server_pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            command = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ")
            if b"spawn_main" in command:
                pids.append(int(child))
    return pids


def wait_for(condition, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not condition():
        if time.time() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.2)


def loads_torch(pid: int) -> bool:
    return "libtorch" in Path(f"/proc/{pid}/maps").read_text()


def test_killing_the_worker_mid_job_keeps_the_server_and_the_next_job_works(models_dir, tmp_path):
    with running_app(models_dir, tmp_path / "app") as app:
        client = Client(app.url, verbose=False)
        params = named_endpoints(client)["/txt2img"]
        image = small_png(tmp_path / "in.png")
        *_, gallery, _ = client.predict(*arguments(params, image), api_name="/txt2img")  # the worker is up
        (worker,) = worker_pids(app.process.pid)
        assert loads_torch(worker) and not loads_torch(app.process.pid)  # the web process runs no model

        slow = arguments(params, image, **{"Sampling steps": 150, "Width": 256, "Height": 256})
        job = client.submit(*slow, api_name="/txt2img")
        wait_for(lambda: job.status().code.name in ("PROCESSING", "ITERATING", "PROGRESS"))
        waiting = Client(app.url, verbose=False).submit(*arguments(params, image), api_name="/txt2img")  # another tab
        wait_for(lambda: waiting.status().code.name == "IN_QUEUE" and waiting.status().rank is not None)
        assert waiting.status().rank == 0  # its place in the queue: next (Gradio's overlay shows it on the page)
        time.sleep(1.5)  # into the sampling loop
        os.kill(worker, signal.SIGKILL)
        with pytest.raises(Exception, match=r"stopped unexpectedly \(signal 9\).*press Generate again"):  # noqa: B017
            job.result(timeout=120)
        *_, waited, _ = waiting.result(timeout=120)  # the waiting job was not lost: the new worker ran it
        assert len(waited) == 1

        assert httpx.get(app.url + "config", timeout=30).status_code == 200
        *_, gallery, infotext = client.predict(*arguments(params, image), api_name="/txt2img")
        assert len(gallery) == 1 and "Steps: 1," in infotext
        (replacement,) = worker_pids(app.process.pid)
        assert replacement != worker
        for path in app.outputs.rglob("*"):
            assert path.is_dir() or path.suffix == ".png", path
            if path.is_file():
                Image.open(path).load()
        assert "signal 9" in app.log()


def test_the_web_process_builds_the_whole_ui_without_importing_torch(models_dir, tmp_path):
    """What app.py imports and builds in the web process (registry, styles, settings, every tab), with a worker
    pool that has no workers: torch stays out of sys.modules."""
    script = f"""
import sys
from pathlib import Path
from core.registry import HashCache, ModelRegistry
from core.settings import Settings
from core.styles import StyleLibrary
from core.worker_pool import WorkerPool
from ui.app_ui import build_ui
from core.services import Services
work = Path({str(tmp_path)!r})
registry = ModelRegistry(Path({str(models_dir)!r}), HashCache(work / "models.json"))
for kind in ("checkpoint", "controlnet", "vae", "lora"):
    for entry in registry.list(kind):
        registry.family_label(entry)  # reads the model files' headers
services = Services(WorkerPool([]), registry, Settings(), work / "config.json", work, StyleLibrary(work / "s.csv"),
                    work / "outputs")
build_ui(services)
heavy = sorted(name for name in ("torch", "diffusers", "controlnet_aux") if name in sys.modules)
print("HEAVY", heavy)
"""
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=Path(__file__).parent.parent, capture_output=True, text=True, timeout=300
    )
    assert "HEAVY []" in done.stdout, done.stdout + done.stderr


def test_no_worker_outlives_the_web_process(models_dir, tmp_path):
    with running_app(models_dir, tmp_path / "app") as app:
        wait_for(lambda: len(worker_pids(app.process.pid)) == 1)
        (worker,) = worker_pids(app.process.pid)
        app.process.send_signal(signal.SIGINT)  # Ctrl+C: the web process stops, and its workers with it
        app.process.wait(timeout=60)
        wait_for(lambda: not Path(f"/proc/{worker}").exists() or _zombie(worker), timeout=30)
    with running_app(models_dir, tmp_path / "again") as app:
        wait_for(lambda: len(worker_pids(app.process.pid)) == 1)
        (worker,) = worker_pids(app.process.pid)
        app.process.kill()  # no chance to clean up: the worker sees its pipe close and exits
        app.process.wait(timeout=60)
        wait_for(lambda: not Path(f"/proc/{worker}").exists() or _zombie(worker), timeout=30)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except FileNotFoundError:
        return True
