"""Bounds on the generation queue: the whole queue holds at most `max_size` events (Gradio's own limit, set in
`queue()`), and one browser session at most `per_session` waiting GPU jobs, so a single visitor cannot fill it."""

from __future__ import annotations

import gradio as gr

MAX_QUEUED_JOBS = 64  # jobs waiting in the whole queue (every visitor together)
MAX_WAITING_JOBS_PER_SESSION = 4  # jobs one browser session may have waiting behind the running one
GPU_QUEUE = "gpu"  # the concurrency_id every generation event of every tab shares


def queue_full_message(per_session: int) -> str:
    return (
        f"The queue is full for this session: {per_session} of your jobs are already waiting. "
        "Wait for one to finish, then try again."
    )


def limit_waiting_jobs(page: gr.Blocks, per_session: int) -> None:
    """Refuses a GPU job from a session that already has `per_session` waiting, with a clear message (HTTP 503,
    shown in the page and raised by gradio_client).

    Gradio has a total queue limit but none per session, and no hook at the moment a job joins the queue, so this
    wraps its Queue.push (gradio is pinned in requirements.txt; tests/security checks the message arrives). The
    session is named by the client, so a script can still spread jobs over many sessions: the total limit is
    what bounds memory."""
    queue = page._queue
    push = queue.push

    async def push_within_limit(body, request, username):
        fn = page.fns.get(body.fn_index) if body.fn_index is not None else None
        if fn is not None and fn.concurrency_id == GPU_QUEUE:
            waiting = queue.event_queue_per_concurrency_id.get(GPU_QUEUE)
            mine = sum(1 for event in (waiting.queue if waiting else ()) if event.session_hash == body.session_hash)
            if mine >= per_session:
                return False, queue_full_message(per_session), "queue_full"
        return await push(body, request, username)

    queue.push = push_within_limit
