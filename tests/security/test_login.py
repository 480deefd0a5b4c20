"""A server others can reach always has a login: made and printed once when none is given, or the owner's own;
an empty password is refused at start; only --insecure-no-auth serves without one, and the page says so."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys

import httpx
import pytest
from gradio_client import Client

from tests.app_server import ROOT, running_app
from tests.security.endpoints import FAST, arguments, named_endpoints, small_png


def login_from_log(log: str) -> tuple[str, str]:
    match = re.search(r"user: (\S+)\n\s+password: (\S+)", log)
    assert match, log
    return match.group(1), match.group(2)


def test_listen_without_credentials_makes_a_private_login_and_requires_it(models_dir, tmp_path):
    work = tmp_path / "app"
    with running_app(models_dir, work, "--listen") as app:
        with pytest.raises(Exception):  # noqa: B017 - gradio_client raises its own error types for a 401
            Client(app.url, verbose=False)
        for route in ("config", "gradio_api/info", f"gradio_api/file={app.outputs}"):
            assert httpx.get(app.url + route).status_code in (401, 403), route

        user, password = login_from_log(app.log())
        stored = work / "cache" / "login.txt"
        assert stored.read_text().strip() == f"{user}:{password}"
        assert stat.S_IMODE(os.stat(stored).st_mode) == 0o600
        assert len(password) >= 20

        client = Client(app.url, auth=(user, password), verbose=False)
        params = named_endpoints(client)["/txt2img"]
        *_, gallery, infotext = client.predict(*arguments(params, small_png(tmp_path / "in.png")), api_name="/txt2img")
        assert len(gallery) == 1 and f"Steps: {FAST['Sampling steps']}," in infotext

        # Printed once, by print (never through the logging module, whose lines carry a level).
        log = app.log()
        assert log.count(password) == 1
        assert not any(password in line and " INFO " in line for line in log.splitlines())

    first_log = len(app.log())
    with running_app(models_dir, work, "--listen") as app:  # a second start keeps it and prints only where it is
        second_log = app.log()[first_log:]
        assert password not in second_log and str(stored) in second_log
        assert httpx.get(app.url + "config").status_code in (401, 403)
        Client(app.url, auth=(user, password), verbose=False)


def test_given_logins_are_used_and_an_empty_password_is_refused_at_start(models_dir, tmp_path):
    logins = tmp_path / "logins.txt"
    logins.write_text("alice:wonder land\nbob:builder\n")
    with running_app(models_dir, tmp_path / "app", "--listen", "--gradio-auth-path", str(logins)) as app:
        Client(app.url, auth=("bob", "builder"), verbose=False)
        with pytest.raises(Exception):  # noqa: B017
            Client(app.url, auth=("bob", "wrong"), verbose=False)
        assert not (tmp_path / "app" / "cache" / "login.txt").exists()

    for bad in ("alice:", ":secret", "alice"):
        started = subprocess.run(
            [sys.executable, "app.py", "--listen", "--gradio-auth", bad, "--device", "cpu"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert started.returncode != 0
        assert "--gradio-auth" in started.stderr and "Traceback" not in started.stderr, started.stderr


def test_only_the_loud_flag_serves_the_network_without_a_login_and_the_page_says_so(models_dir, tmp_path):
    with running_app(models_dir, tmp_path / "app", "--listen", "--insecure-no-auth") as app:
        Client(app.url, verbose=False)
        page = httpx.get(app.url + "config").json()
        banners = [c for c in page["components"] if c.get("props", {}).get("elem_id") == "server_banner"]
        assert banners and "WITHOUT A LOGIN" in banners[0]["props"]["value"]
        assert "WITHOUT A LOGIN" in app.log()


def test_local_serving_needs_no_login_and_shows_no_banner(models_dir, tmp_path):
    with running_app(models_dir, tmp_path / "app") as app:
        page = httpx.get(app.url + "config").json()
        assert not any(c.get("props", {}).get("elem_id") == "server_banner" for c in page["components"])
        assert not (tmp_path / "app" / "cache" / "login.txt").exists()
