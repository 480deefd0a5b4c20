"""An outsider's hostile values in every parameter of every endpoint, and crafted queue events to every listener of
the page: afterwards no file route serves /etc/passwd or a secret beside the outputs, the server still answers, and
the next normal job works. Settings stay the owner's: Apply is refused to API clients and, for folders, to anyone
not on this machine."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from gradio_client import Client

from tests.app_server import ROOT, running_app
from tests.security.endpoints import (
    FAST,
    arguments,
    completed,
    dependency,
    is_text,
    join_queue,
    named_endpoints,
    small_png,
    widget_defaults,
)

SECRET = "TOP-SECRET-CONTENTS-7f3a"
LONG = "x" * 100_000


@pytest.fixture(scope="module")
def server(models_dir, tmp_path_factory):
    work = tmp_path_factory.mktemp("hostile")
    secret_dir = work / "private"
    secret_dir.mkdir()
    (secret_dir / "secret.txt").write_text(SECRET)
    small_png(secret_dir / "secret.png")
    with running_app(models_dir, work / "app") as app:
        yield app, secret_dir


def hostile_values(secret_dir: Path, outputs: Path) -> list[str]:
    return [
        "/",
        "../../etc",
        "/etc/passwd",
        str(secret_dir / "secret.txt"),
        f"{outputs}/../../private/secret.png",
        LONG,
        "a\x00b",
    ]


def file_routes(secret_dir: Path, outputs: Path) -> list[str]:
    """Every way we know to ask Gradio's file routes for a file outside the outputs: system files, a secret beside
    them, the program (the server's working folder), and the cache's own files (the browser-state key)."""
    cache = outputs.parent / "cache"
    targets = [
        "/etc/passwd",
        str(secret_dir / "secret.txt"),
        str(secret_dir / "secret.png"),
        str(ROOT / "app.py"),
        str(cache / "browser-state.key"),
        str(cache / "models.json"),
    ]
    climbs = [f"{outputs}/../../private/secret.txt", f"{outputs}/%2e%2e/%2e%2e/private/secret.txt"]
    routes = []
    for target in targets + climbs:
        for prefix in ("gradio_api/file=", "file=", "gradio_api/file/"):
            routes += [prefix + target, prefix + quote(target, safe="")]
    return routes


def assert_nothing_leaks(app, secret_dir: Path) -> None:
    for route in file_routes(secret_dir, app.outputs):
        response = httpx.get(app.url + route, timeout=30)
        assert response.status_code != 200 or SECRET not in response.text and "root:" not in response.text, route
        assert response.status_code in (400, 403, 404, 405), (route, response.status_code)


def assert_normal_job_works(app, tmp_path) -> str:
    """Returns the served address of the image the job wrote (the one kind of file the server hands out)."""
    client = Client(app.url, verbose=False)
    params = named_endpoints(client)["/txt2img"]
    *_, gallery, infotext = client.predict(*arguments(params, small_png(tmp_path / "in.png")), api_name="/txt2img")
    assert len(gallery) == 1 and f"Steps: {FAST['Sampling steps']}," in infotext
    written = sorted(app.outputs.rglob("*.png"))
    assert written
    response = httpx.get(app.url + f"gradio_api/file={written[-1]}", timeout=30)
    assert response.status_code == 200 and response.content[:4] == b"\x89PNG"
    return str(written[-1])


def test_hostile_text_in_every_parameter_of_every_endpoint(server, tmp_path):
    app, secret_dir = server
    assert_normal_job_works(app, tmp_path)  # the routes do serve what the server wrote, so the checks below can fail
    client = Client(app.url, verbose=False)
    image = small_png(tmp_path / "in.png")
    endpoints = named_endpoints(client)
    assert {"/txt2img", "/img2img", "/inpaint", "/outpaint", "/controlnet"} <= set(endpoints)
    calls = 0
    for api_name, params in endpoints.items():
        for index, param in enumerate(params):
            if not is_text(param):
                continue
            for value in hostile_values(secret_dir, app.outputs):
                values = arguments(params, image)
                values[index] = value
                try:
                    outputs = client.predict(*values, api_name=api_name)
                except Exception as refused:  # noqa: BLE001 - refusals are fine; leaking is not
                    assert SECRET not in str(refused)
                else:
                    assert SECRET not in json.dumps(outputs, default=str)
                calls += 1
    assert calls > 100
    assert_nothing_leaks(app, secret_dir)
    assert_normal_job_works(app, tmp_path)


def test_crafted_events_to_every_listener_of_the_page_reach_no_file(server, tmp_path):
    """The page's own events (gallery selection, send-to, refresh, settings…) called by hand with a path to the
    secret image in every file input and the secret's path in every other one."""
    app, secret_dir = server
    config = httpx.get(app.url + "config", timeout=30).json()
    components = {c["id"]: c for c in config["components"]}
    secret_file = {"path": str(secret_dir / "secret.png"), "meta": {"_type": "gradio.FileData"}}
    for listener in config["dependencies"]:
        data = widget_defaults(config, listener)
        for position, component_id in enumerate(listener["inputs"]):
            component = components[component_id]
            label = component.get("props", {}).get("label")
            if component["type"] in ("image", "gallery", "file"):
                data[position] = secret_file
            elif component["type"] == "imageeditor":
                data[position] = {"background": secret_file, "layers": [], "composite": secret_file}
            elif label in FAST:
                data[position] = FAST[label]
            elif isinstance(data[position], str) or data[position] is None:
                data[position] = str(secret_dir / "secret.png")
        session = f"crafted-{listener['id']}"
        joined = join_queue(app.url, listener["id"], data, session)
        if joined.status_code != 200:
            continue
        for message in completed(app.url, session):
            assert SECRET not in json.dumps(message)
            served = file_paths(message.get("output", {}).get("data", []))
            assert not any(str(secret_dir) in path for path in served), (listener["api_name"], served)
    assert_nothing_leaks(app, secret_dir)
    assert_normal_job_works(app, tmp_path)


def test_settings_are_not_an_api_and_folders_change_only_from_this_machine(server, tmp_path):
    app, secret_dir = server
    client = Client(app.url, verbose=False)
    assert not any("apply" in name or "settings" in name for name in named_endpoints(client))

    config = httpx.get(app.url + "config", timeout=30).json()
    apply = dependency(config, "apply")
    data = widget_defaults(config, apply)
    folder = next(i for i, c in enumerate(apply["inputs"]) if "Output folder" in _label(config, c))
    data[folder] = "/"
    outsiders = {
        "api": {"x-gradio-user": "api"},  # what gradio_client sends
        "tunnel": {"x-forwarded-for": "203.0.113.9"},  # a visitor through the share link or a proxy
        "rebinding": {"host": "evil.example"},
    }
    for name, headers in outsiders.items():
        joined = join_queue(app.url, apply["id"], data, f"settings-{name}", headers)
        assert joined.status_code == 200, joined.text
        (message,) = completed(app.url, f"settings-{name}", headers)
        assert not message["success"], name
        assert "API" in message["output"]["error"] or "own machine" in message["output"]["error"], message
    assert json.loads(app.config.read_text()).get("outputs_dir") != "/"

    # From this machine the owner may change folders, but never to one that would serve the disk.
    joined = join_queue(app.url, apply["id"], data, "settings-owner")
    (message,) = completed(app.url, "settings-owner")
    assert not message["success"] and "too wide" in message["output"]["error"]
    assert_nothing_leaks(app, secret_dir)


def file_paths(value) -> list[str]:
    """The files an event's outputs hand to the browser (Gradio FileData: a dict with a path or url)."""
    if isinstance(value, dict):
        own = [str(value[key]) for key in ("path", "url") if isinstance(value.get(key), str)]
        return own + [path for item in value.values() for path in file_paths(item)]
    if isinstance(value, list):
        return [path for item in value for path in file_paths(item)]
    return []


def _label(config: dict, component_id: int) -> str:
    component = next(c for c in config["components"] if c["id"] == component_id)
    return str(component.get("props", {}).get("label"))
