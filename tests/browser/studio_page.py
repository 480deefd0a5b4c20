"""Drives the web UI's widgets by their element ids, the way a person does: typing, dragging, clicking."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from PIL import Image
from playwright.sync_api import ConsoleMessage, Page, expect

GENERATION_TIMEOUT_MS = 120_000
RESTORED_SCOPES = ("models", "txt2img", "img2img", "inpaint", "controlnet")


class StudioPage:
    def __init__(self, page: Page, url: str):
        self.page = page
        self.url = url
        self.console: list[str] = []
        page.on("console", self._on_console)
        page.on("pageerror", lambda error: self.console.append(f"pageerror: {error}"))

    def _on_console(self, message: ConsoleMessage) -> None:
        self.console.append(f"{message.type}: {message.text}")

    def console_errors(self) -> list[str]:
        return [line for line in self.console if line.startswith(("error:", "pageerror:"))]

    def open(self) -> None:
        self.page.goto(self.url)
        self.wait_until_loaded()

    def reload(self) -> None:
        self.page.reload()
        self.wait_until_loaded()

    def wait_until_loaded(self) -> None:
        self.page.wait_for_selector("#txt2img_generate")
        # The values remembered by the browser arrive through load events, which mark the page when done.
        for scope in RESTORED_SCOPES:
            self.page.wait_for_selector(f"body[data-restored_{scope}]", state="attached")

    # --- widgets ---------------------------------------------------------------------------------------------
    def fill(self, elem_id: str, text: str) -> None:
        box = self.page.locator(f"#{elem_id} textarea, #{elem_id} input").first
        box.fill(text)
        box.blur()

    def text(self, elem_id: str) -> str:
        return self.page.locator(f"#{elem_id} textarea, #{elem_id} input").first.input_value()

    def set_slider(self, elem_id: str, value: float) -> None:
        """Drags the slider's range input to the value (Playwright's fill sets it and fires input/change)."""
        number = self.page.locator(f"#{elem_id} input[type=number]")
        self.page.locator(f"#{elem_id} input[type=range]").fill(str(value))
        if number.input_value() != str(value):  # not taken yet (e.g. a slider in an opening accordion): type it
            number.fill(str(value))
            number.press("Enter")
        expect(number).to_have_value(str(value))

    def slider(self, elem_id: str) -> float:
        return float(self.page.locator(f"#{elem_id} input[type=number]").input_value())

    def choose(self, elem_id: str, option: str) -> None:
        """Opens a dropdown and clicks the option labelled `option` (or, failing that, starting with it)."""
        box = self.page.locator(f"#{elem_id} input[role=combobox]")
        box.click()
        listbox = f"#{box.get_attribute('aria-controls')}"
        exact = self.page.locator(f"{listbox} li[role=option][aria-label={json.dumps(option)}]")
        prefix = self.page.locator(f"{listbox} li[role=option][aria-label^={json.dumps(option)}]")
        (exact if exact.count() else prefix).first.click()
        expect(box).to_have_value(_startswith(option))

    def add_choice(self, elem_id: str, option: str) -> None:
        """Picks `option` in a multiselect dropdown (it shows as a token; the text box empties again)."""
        box = self.page.locator(f"#{elem_id} input[role=combobox]")
        box.click()
        self.page.locator(
            f"#{box.get_attribute('aria-controls')} li[role=option][aria-label={json.dumps(option)}]"
        ).click()
        expect(self.page.locator(f"#{elem_id} .token")).to_contain_text([option])
        box.press("Escape")

    def chosen(self, elem_id: str) -> str:
        return self.page.locator(f"#{elem_id} input[role=combobox]").input_value()

    def click(self, elem_id: str) -> None:
        self.page.locator(f"#{elem_id}").click()

    # --- generating ------------------------------------------------------------------------------------------
    def watch_job(self, tab: str = "txt2img") -> None:
        """Records every preview image and progress value the page shows from now on (read by job_trace())."""
        self.page.evaluate(
            """(tab) => {
              window.__trace = { previews: [], progress: [] };
              const observer = new MutationObserver(() => {
                const img = document.querySelector(`#${tab}_preview img`);
                const src = img && img.getAttribute('src');
                const previews = window.__trace.previews;
                if (src && previews[previews.length - 1] !== src) previews.push(src);
                const bar = document.querySelector(`#${tab}_progress [role=progressbar]`);
                if (bar) window.__trace.progress.push(Number(bar.getAttribute('aria-valuenow')));
              });
              observer.observe(document.body, { subtree: true, childList: true, attributes: true });
            }""",
            tab,
        )

    def job_trace(self) -> dict:
        return self.page.evaluate("window.__trace")

    def generate(self, tab: str = "txt2img", *, keyboard: bool = False) -> str:
        """Starts a job (button, or Ctrl+Enter in the prompt) and returns the infotext of its first image."""
        marker = self.job_marker(tab)
        if keyboard:
            self.page.locator(f"#{tab}_prompt textarea").press("Control+Enter")
        else:
            self.click(f"{tab}_generate")
        return self.wait_for_job(marker, tab)

    def job_marker(self, tab: str = "txt2img") -> tuple[str, int]:
        """Read before starting a job: the last job's summary ("1 image in 0.4 s · saved 00003-77.png", different
        for every job) and how many error messages the page shows."""
        done = self.page.locator(f"#{tab}_progress .job-done")
        return (done.inner_text() if done.count() else ""), len(self.error_toasts())

    def wait_for_job(self, marker: tuple[str, int], tab: str = "txt2img") -> str:
        """Waits until the job started after `marker` has finished; returns the shown infotext. A new error
        message fails at once."""
        summary, toasts = marker
        self.page.wait_for_function(
            """([sel, summary, toasts]) => {
              const d = document.querySelector(sel);
              return (d && d.innerText !== summary) || document.querySelectorAll('.toast-body').length > toasts;
            }""",
            arg=[f"#{tab}_progress .job-done", summary, toasts],
            timeout=GENERATION_TIMEOUT_MS,
        )
        assert len(self.error_toasts()) == toasts, f"the job failed: {self.error_toasts()[toasts:]}"
        return self.infotext(tab)

    def infotext(self, tab: str = "txt2img") -> str:
        return self.page.locator(f"#{tab}_infotext textarea").input_value()

    def gallery_images(self, tab: str = "txt2img") -> list[Image.Image]:
        """The result images as the browser downloads them (the saved PNG files, served by the app)."""
        sources = self.page.locator(f"#{tab}_gallery img").evaluate_all("imgs => imgs.map(i => i.src)")
        images = []
        for src in dict.fromkeys(sources):  # the gallery may show one image twice (thumbnail and preview)
            response = self.page.request.get(src)
            assert response.ok, f"{src}: HTTP {response.status}"
            images.append(Image.open(io.BytesIO(response.body())))
        return images

    def error_toasts(self) -> list[str]:
        return self.page.locator(".toast-body").all_inner_texts()

    # --- evidence ----------------------------------------------------------------------------------------------
    def save_evidence(self, folder: Path, name: str) -> None:
        try:
            self.page.screenshot(path=str(folder / f"{name}.png"), full_page=True)
        except Exception as exc:  # a crashed page still leaves its console log
            self.console.append(f"(screenshot failed: {exc})")
        (folder / f"{name}-console.log").write_text("\n".join(self.console) + "\n")

    def local_storage(self) -> str:
        return self.page.evaluate("JSON.stringify(localStorage)")

    def wait_until_remembered(self, storage_before: str) -> None:
        """Waits for the browser to store a change made after `storage_before` was read (a round trip)."""
        self.page.wait_for_function("(before) => JSON.stringify(localStorage) !== before", arg=storage_before)


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"))


def _startswith(prefix: str):
    import re

    return re.compile("^" + re.escape(prefix))
