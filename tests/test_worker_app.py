"""Through the running app: jobs run in a generation worker process, and killing it mid-job leaves the server
serving, gives the job a clear message, and the next job works with no partial file left in the outputs."""

from __future__ import annotations

import os
import signal
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


def test_killing_the_worker_mid_job_keeps_the_server_and_the_next_job_works(models_dir, tmp_path):
    with running_app(models_dir, tmp_path / "app") as app:
        client = Client(app.url, verbose=False)
        params = named_endpoints(client)["/txt2img"]
        image = small_png(tmp_path / "in.png")
        *_, gallery, _ = client.predict(*arguments(params, image), api_name="/txt2img")  # the worker is up
        (worker,) = worker_pids(app.process.pid)

        slow = arguments(params, image, **{"Sampling steps": 150, "Width": 256, "Height": 256})
        job = client.submit(*slow, api_name="/txt2img")
        wait_for(lambda: job.status().code.name in ("PROCESSING", "ITERATING", "PROGRESS"))
        time.sleep(1.5)  # into the sampling loop
        os.kill(worker, signal.SIGKILL)
        with pytest.raises(Exception, match=r"stopped unexpectedly \(signal 9\).*press Generate again"):  # noqa: B017
            job.result(timeout=120)

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

