"""A1111's generation routes: txt2img, img2img, progress, interrupt, skip, and GET/POST options. Jobs go through
Services.run_job — the same request object, queue, workers and infotext as the UI's Generate button."""

from __future__ import annotations

import time
from typing import Any

import anyio
from fastapi import APIRouter, Body

from api.options import apply_options, read_options
from api.schemas import ImagesResponse, Img2ImgRequest, ProgressResponse, Txt2ImgRequest
from api.translate import build_request, encoded_images, info_json, png_base64
from core.errors import UserError
from core.events import JobControl, Progress, final_result
from core.job_board import MAX_JOBS_IN_FLIGHT, TrackedJob
from core.services import Services
from core.starter import default_checkpoint


def add_generation_routes(router: APIRouter, services: Services) -> None:
    # A job's HTTP call waits in a thread of its own while the job waits and runs; the board bounds how many.
    job_threads = anyio.CapacityLimiter(MAX_JOBS_IN_FLIGHT)

    def run(body: Txt2ImgRequest | Img2ImgRequest, mode: str) -> dict[str, Any]:
        registry, settings = services.registry, services.settings
        request = build_request(body, settings, registry, default_checkpoint(registry) or "")
        started = time.time()
        result = final_result(services.run_job(request, JobControl(), mode, origin="api"))
        parameters = body.model_dump()
        if isinstance(body, Img2ImgRequest) and not body.include_init_images:
            parameters.update(init_images=None, mask=None)  # as A1111: the answer does not echo the images back
        keep = body.save_images and not body.do_not_save_samples
        images = encoded_images(result, keep_files=keep)
        return {"images": images if body.send_images else [], "parameters": parameters,
                "info": info_json(request, result, started)}  # fmt: skip

    async def in_a_thread(body: Txt2ImgRequest | Img2ImgRequest, mode: str) -> dict[str, Any]:
        if services.board.in_flight() >= services.board.limit:  # refused before a thread (or a model) is spent
            raise UserError(f"The queue is full ({services.board.limit} jobs); try again in a moment.")
        return await anyio.to_thread.run_sync(run, body, mode, limiter=job_threads)

    @router.post("/sdapi/v1/txt2img", response_model=ImagesResponse)
    async def text2imgapi(body: Txt2ImgRequest):
        return await in_a_thread(body, "txt2img")

    @router.post("/sdapi/v1/img2img", response_model=ImagesResponse)
    async def img2imgapi(body: Img2ImgRequest):
        return await in_a_thread(body, "img2img")

    @router.get("/sdapi/v1/progress", response_model=ProgressResponse)
    def progressapi(skip_current_image: bool = False):
        return progress_answer(services.board.current(), services.board.waiting(), skip_current_image)

    @router.post("/sdapi/v1/interrupt")
    def interruptapi():
        """Interrupts the current job (as A1111: the one `progress` reports on); it returns what it has made."""
        job = services.board.current()
        if job:
            job.control.interrupt()

    @router.post("/sdapi/v1/skip")
    def skip():
        """Ends the current batch of the current job; its next batch runs."""
        job = services.board.current()
        if job:
            job.control.skip()

    @router.get("/sdapi/v1/options")
    def get_config():
        return read_options(services.settings, services.registry, default_checkpoint(services.registry))

    @router.post("/sdapi/v1/options")
    def set_config(values: dict[str, Any] = Body(...)):  # noqa: B008 (FastAPI's way to take any JSON object)
        """A flat dict of A1111 option names; unknown ones are kept as sent. Returns null, as A1111."""
        changed = apply_options(values, services.settings, services.registry)
        services.apply_settings(changed)


def progress_answer(job: TrackedJob | None, waiting: int, skip_current_image: bool) -> dict[str, Any]:
    """A1111's ProgressResponse. Idle is progress 0 and job_count 0 (what clients poll for)."""
    state = {"skipped": False, "interrupted": False, "stopping_generation": False, "job": "", "job_count": 0,
             "job_timestamp": "0", "job_no": 0, "sampling_step": 0, "sampling_steps": 0, "queued": waiting}  # fmt: skip
    if job is None:  # idle, or jobs waiting for a worker that is starting (so a poller does not stop early)
        state["job_count"] = waiting
        text = "Waiting for the generation worker" if waiting else None
        return {"progress": 0, "eta_relative": 0, "state": state, "current_image": None, "textinfo": text}
    event = job.progress
    state.update(
        interrupted=job.control.interrupted,
        job=f"job({job.number})",
        job_count=job.batch_count,
        job_timestamp=job.timestamp,
        job_no=event.batch_index if event else 0,
        sampling_step=event.step if event else 0,
        sampling_steps=event.total_steps if event else job.steps,
    )
    if event is None:
        return {"progress": 0.01, "eta_relative": 0, "state": state, "current_image": None,
                "textinfo": job.notice or "Loading the model…"}  # fmt: skip
    preview = None if skip_current_image else _preview_png(event)
    text = f"Step {event.step}/{event.total_steps}" + (
        f", batch {event.batch_index + 1}/{event.batch_count}" if event.batch_count > 1 else ""
    )
    return {"progress": round(event.fraction, 4), "eta_relative": round(event.eta or 0, 2), "state": state,
            "current_image": preview, "textinfo": text}  # fmt: skip


def _preview_png(event: Progress) -> str | None:
    return png_base64(event.preview[0]) if event.preview else None
