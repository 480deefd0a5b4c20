"""Who sent a Gradio event: a browser on this machine, a visitor (share link, another machine), or a program."""

from __future__ import annotations

import gradio as gr

from core.access import is_local_request


def from_this_machine(request: gr.Request | None) -> bool:
    """A browser on this machine talking to the server directly (not through the share tunnel or a proxy)."""
    if request is None:
        return False
    client = getattr(request, "client", None)
    return is_local_request(getattr(client, "host", None), dict(request.headers or {}))


def from_api_client(request: gr.Request | None) -> bool:
    """An event sent by gradio_client (it names itself in this header) rather than by the page."""
    if request is None:
        return True
    headers = {key.lower(): value for key, value in dict(request.headers or {}).items()}
    return headers.get("x-gradio-user") == "api"
