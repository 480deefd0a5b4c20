"""Two people on one worker, in real browsers: the second one's job waits and the page shows its place in the
queue; a tab closed mid-job stops that job, so the next person does not wait for it."""

from __future__ import annotations

import time

import httpx

from tests.browser.test_txt2img_browser import quick_settings


def test_a_waiting_job_shows_its_place_in_the_queue(open_page):
    first, second = open_page(), open_page()  # two browsers: two sessions
    quick_settings(first, steps=150, size=512)
    quick_settings(second, steps=1, size=64)
    marker = second.job_marker()
    first.click("txt2img_generate")
    first.page.locator("#txt2img_progress .job-progress").wait_for(timeout=60_000)  # running on the worker
    second.click("txt2img_generate")
    # Gradio's status overlay on the waiting job's outputs: "queue: 1/1 | …" while the first job runs.
    queued = second.page.locator("#txt2img_gallery .progress-text, #txt2img_progress .progress-text")
    queued.filter(has_text="queue").first.wait_for(timeout=30_000)
    assert "queue: 1/" in queued.filter(has_text="queue").first.inner_text()
    first.click("txt2img_interrupt")
    assert "Steps: 1," in second.wait_for_job(marker)


def test_closing_the_tab_stops_its_job(open_page):
    leaving, staying = open_page(), open_page()
    quick_settings(leaving, steps=150, size=512)
    quick_settings(staying, steps=1, size=64)
    leaving.click("txt2img_generate")
    leaving.page.locator("#txt2img_progress .job-progress").wait_for(timeout=60_000)
    leaving.page.close()
    started = time.perf_counter()
    assert "Steps: 1," in staying.generate()
    # The 150-step 512x512 job alone takes well over 20 s here; it was stopped instead of run to its end.
    assert time.perf_counter() - started < 15


def test_the_page_says_the_model_is_loading_until_a_worker_is_ready(app, open_page):
    # The page was built as the server started, before its worker was ready: that is what it says first...
    config = httpx.get(app.url + "config", timeout=30).json()
    (status,) = [c for c in config["components"] if c.get("props", {}).get("elem_id") == "worker_status"]
    assert "loading the model" in status["props"]["value"]
    # ...and once the worker is up the line goes, within a poll.
    studio = open_page()
    studio.page.wait_for_function(
        "() => !document.querySelector('#worker_status').innerText.includes('loading')", timeout=10_000
    )
