"""A line at the top of the page while the generation workers start ("Loading the model…"), or why they cannot.

The page is usable at once (prompts, settings, the model lists come from the web process); a job pressed before a
worker is ready waits for it. The line polls once a second and stops polling when the workers are ready."""

from __future__ import annotations

import html

import gradio as gr

from core.dispatch import Generator

POLL_SECONDS = 1.0


def status_html(generator: Generator) -> str:
    if generator.problem:
        return f'<div class="worker-status worker-failed" role="alert">{html.escape(generator.problem)}</div>'
    if not generator.ready:
        return '<div class="worker-status" role="status">Starting the generation worker: loading the model…</div>'
    return ""


def build_worker_status(generator: Generator) -> None:
    status = gr.HTML(status_html(generator), elem_id="worker_status")
    timer = gr.Timer(POLL_SECONDS, active=not generator.ready)

    def tick():
        return status_html(generator), gr.Timer(active=not generator.ready and not generator.problem)

    timer.tick(tick, outputs=[status, timer], queue=False, show_progress="hidden", api_visibility="private")
