"""app.py as a real server process, driven through the txt2img tab's named API endpoint with gradio_client."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from gradio_client import Client

from core.outputs import read_infotext

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(models_dir, tmp_path_factory):
    work = tmp_path_factory.mktemp("server")
    port = free_port()
    log = open(work / "server.log", "w")  # noqa: SIM115 (outlives this block: the server writes to it)
    process = subprocess.Popen(
        [
            sys.executable,
            "app.py",
            "--port",
            str(port),
            "--models-dir",
            str(models_dir),
            "--outputs-dir",
            str(work / "outputs"),
            "--config",
            str(work / "config.json"),
            "--device",
            "cpu",
        ],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            if process.poll() is not None:
                raise RuntimeError((work / "server.log").read_text())
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                time.sleep(0.5)
        else:
            raise RuntimeError("server did not start:\n" + (work / "server.log").read_text())
        yield url, work
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def txt2img_args(**changes):
    values = dict(
        prompt="a photo of a cat",
        negative_prompt="",
        checkpoint="sd15/tiny-sd1.safetensors",
        vae="Automatic",
        sampler_name="Euler a",
        scheduler="Automatic",
        steps=3,
        width=64,
        height=64,
        n_iter=1,
        batch_size=1,
        cfg_scale=7,
        seed=1234,
        clip_skip=1,
    )
    values.update(changes)
    return list(values.values())


def test_generate_through_the_named_api_endpoint(server):
    url, work = server
    client = Client(url, verbose=False)
    preview, progress, gallery, infotext = client.predict(*txt2img_args(), api_name="/txt2img")
    assert len(gallery) == 1
    assert infotext.startswith(
        "a photo of a cat\nSteps: 3, Sampler: Euler a, Schedule type: Automatic, CFG scale: 7, Seed: 1234, Size: 64x64"
    )
    saved = list((work / "outputs" / "txt2img-images").rglob("*.png"))
    assert len(saved) == 1 and read_infotext(saved[0]) == infotext


def test_bad_input_gives_a_message_and_the_server_keeps_running(server):
    url, _ = server
    client = Client(url, verbose=False)
    with pytest.raises(Exception, match="not a multiple of 8"):
        client.predict(*txt2img_args(width=70), api_name="/txt2img")
    *_, infotext = client.predict(*txt2img_args(seed=5), api_name="/txt2img")
    assert "Seed: 5," in infotext
