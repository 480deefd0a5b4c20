"""Runs a request through the engine for a Gradio handler: progress HTML, previews, results and errors."""

from __future__ import annotations

import html
import logging
import time
from collections.abc import Iterator

import gradio as gr

from core.errors import UserError
from core.events import Notice, Progress, Result
from core.request import GenerationRequest
from core.services import Services

log = logging.getLogger(__name__)


def progress_html(event: Progress) -> str:
    percent = round(event.fraction * 100)
    hires = "Hires pass, step" if event.pass_index else "Step"
    parts = [f"{hires} {event.step}/{event.total_steps}"]
    if event.batch_count > 1:
        parts.append(f"batch {event.batch_index + 1}/{event.batch_count}")
    parts.append(f"{event.elapsed:.1f} s")
    if event.eta is not None:
        parts.append(f"{event.eta:.1f} s left")
    return (
        f'<div class="job-progress" role="progressbar" aria-valuenow="{percent}" aria-valuemin="0" aria-valuemax="100">'
        f'<div class="job-progress-bar" style="width:{percent}%"></div>'
        f'<span class="job-progress-text">{percent}% · {html.escape(" · ".join(parts))}</span></div>'
    )


def result_html(result: Result, seconds: float) -> str:
    """What the job made, how long it took and the saved file names (each job's summary is different)."""
    done = "Interrupted: " if result.interrupted else ""
    count = f"{len(result.images)} image" + ("" if len(result.images) == 1 else "s")
    names = [img.path.name for img in result.images if img.path]
    saved = f" · saved {names[0]}" + (f" … {names[-1]}" if len(names) > 1 else "") if names else ""
    return f'<div class="job-done">{done}{count} in {seconds:.1f} s{html.escape(saved)}</div>'


def notices_html(messages: list[str]) -> str:
    return "".join(f'<div class="job-notice">{html.escape(m)}</div>' for m in messages)


def run_job(services: Services, request: GenerationRequest, session: str, mode: str) -> Iterator[tuple]:
    """Yields (preview, progress_html, result) triples; result is None until the Result arrives.

    UserError becomes gr.Error, which the page shows and API clients receive as the error message.
    """
    control = services.jobs.start(session)
    notices: list[str] = []
    started = time.perf_counter()
    try:
        if not services.generator.ready:
            yield None, notices_html(["Starting the generation worker and loading the model…"]), None
        for event in services.run_job(request, control, mode, origin="ui"):
            if isinstance(event, Progress):
                preview = event.preview[0] if event.preview else None
                yield preview, notices_html(notices) + progress_html(event), None
            elif isinstance(event, Notice):
                notices.append(event.message)
                yield None, notices_html(notices), None
            elif isinstance(event, Result):
                yield None, notices_html(notices) + result_html(event, time.perf_counter() - started), event
    except UserError as exc:
        raise gr.Error(str(exc), duration=None) from exc
    finally:
        services.jobs.finish(session, control)
