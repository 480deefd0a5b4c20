"""Browser test setup: Debian's Chromium driven by Playwright, the app as a real server on a tiny model, and a
screenshot plus the console log of every open page saved when a test fails."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright

from tests.app_server import ROOT, RunningApp, running_app
from tests.browser.studio_page import StudioPage
from tests.fixtures.tiny_models import write_checkpoint, write_controlnet

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
# Headless as root, and never reaching out to the internet (see shared/ENVIRONMENT.md).
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = ROOT / "test-artifacts" / "browser"
LAPTOP = {"width": 1366, "height": 768}


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium not found at {CHROMIUM}: ./run_tests.sh installs it (apt-get install chromium).")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def browser_models(tmp_path_factory) -> Path:
    """A tiny SD1 checkpoint and a ControlNet for it, and a broken file that looks like a checkpoint."""
    root = tmp_path_factory.mktemp("browser-models")
    write_checkpoint(root / "Stable-diffusion" / "tiny-sd1.safetensors", "SD1")
    write_controlnet(root / "ControlNet" / "tiny-sd1-canny.safetensors", "SD1")
    (root / "Stable-diffusion" / "broken.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json" * 4)
    return root


@pytest.fixture(scope="module")
def app(browser_models, tmp_path_factory) -> Iterator[RunningApp]:
    with running_app(browser_models, tmp_path_factory.mktemp("app")) as running:
        yield running


@pytest.fixture
def artifacts(request) -> Path:
    """This test's output folder (screenshots, console logs)."""
    folder = ARTIFACTS / re.sub(r"[^\w.-]+", "_", request.node.nodeid.split("::", 1)[-1])
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


@pytest.fixture
def open_url(browser, artifacts, request) -> Iterator[Callable[..., StudioPage]]:
    """Opens an app URL in a new browser context (its own cookies and localStorage: another person's browser),
    or in a given context (another tab of the same browser). On failure each page leaves a screenshot and its
    console log in the test's artifacts folder."""
    pages: list[StudioPage] = []

    def open_new(url: str, color_scheme: str = "light", viewport: dict | None = None, context=None) -> StudioPage:
        context = context or browser.new_context(viewport=viewport or LAPTOP, color_scheme=color_scheme)
        studio = StudioPage(context.new_page(), url)
        pages.append(studio)
        studio.open()
        return studio

    yield open_new
    report = getattr(request.node, "report_call", None)
    if report is None or report.failed:
        for index, studio in enumerate(pages):
            studio.save_evidence(artifacts, f"page{index}")
    for studio in pages:
        studio.page.context.close()


@pytest.fixture
def open_page(open_url, app, artifacts, request) -> Iterator[Callable[..., StudioPage]]:
    """Opens the module's running app (see open_url); a failing test also keeps the server log."""
    yield lambda **options: open_url(app.url, **options)
    report = getattr(request.node, "report_call", None)
    if report is None or report.failed:
        (artifacts / "server.log").write_text(app.log())
