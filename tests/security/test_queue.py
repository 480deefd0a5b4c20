"""One visitor cannot fill the queue: a flood of jobs from one browser session is cut off at the per-session limit
with a clear message while another session's job still runs, and the whole queue has a bound too."""

from __future__ import annotations

import httpx
from gradio_client import Client

from tests.app_server import running_app
from tests.security.endpoints import (
    FAST,
    arguments,
    dependency,
    join_queue,
    named_endpoints,
    small_png,
    widget_defaults,
)
from ui.job_limits import MAX_QUEUED_JOBS, MAX_WAITING_JOBS_PER_SESSION

# Jobs of a minute or more on CPU, so the flood arrives while they all still wait (a tiny model's 1-step job would be
# done before the next request came, and the per-session limit would never be reached). They are cancelled after.
SLOW = {**FAST, "Sampling steps": 150, "Width": 512, "Height": 512, "Batch size": 8}


def slow_txt2img(config: dict) -> tuple[int, list]:
    """The txt2img listener's index and the data a page would send for a slow job."""
    listener = dependency(config, "txt2img")
    components = {c["id"]: c for c in config["components"]}
    data = widget_defaults(config, listener)
    for position, component_id in enumerate(listener["inputs"]):
        label = components[component_id].get("props", {}).get("label")
        data[position] = SLOW.get(label, data[position])
    return listener["id"], data


def test_a_flood_from_one_session_is_cut_off_and_others_still_get_their_jobs(models_dir, tmp_path):
    with running_app(models_dir, tmp_path / "app") as app:
        config = httpx.get(app.url + "config", timeout=30).json()
        fn_index, data = slow_txt2img(config)

        answers = [join_queue(app.url, fn_index, data, "flood") for _ in range(500)]
        accepted = [a for a in answers if a.status_code == 200]
        refused = [a for a in answers if a.status_code != 200]
        # The one running now, and the waiting ones up to the limit.
        assert len(accepted) == MAX_WAITING_JOBS_PER_SESSION + 1, len(accepted)
        assert {a.status_code for a in refused} == {503}
        assert "The queue is full for this session" in refused[-1].json()["detail"]

        for answer in accepted:  # cancelled: the running one stops, the waiting ones leave the queue
            cancel = {"session_hash": "flood", "fn_index": fn_index, "event_id": answer.json()["event_id"]}
            assert httpx.post(app.url + "gradio_api/cancel", json=cancel, timeout=30).status_code == 200

        client = Client(app.url, verbose=False)
        params = named_endpoints(client)["/txt2img"]
        *_, gallery, _ = client.predict(*arguments(params, small_png(tmp_path / "in.png")), api_name="/txt2img")
        assert len(gallery) == 1

        # The whole queue is bounded too, however many sessions a script makes up (the server is stopped with
        # these still waiting).
        spread = [join_queue(app.url, fn_index, data, f"made-up-{n}") for n in range(MAX_QUEUED_JOBS + 30)]
        assert MAX_QUEUED_JOBS - 5 <= sum(a.status_code == 200 for a in spread) <= MAX_QUEUED_JOBS + 2
        full = [a for a in spread if a.status_code != 200]
        assert full and "queue is full" in full[-1].text.lower(), full[-1].text
        assert httpx.get(app.url + "config", timeout=30).status_code == 200 and app.process.poll() is None
