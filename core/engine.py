"""Runs one GenerationRequest at a time per device and streams its events (progress, previews, result)."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterator

import torch
from PIL import Image

from core.conditioning import JobPrompts, encode_job_prompts
from core.controlnet import Control, control_map, controllable, run_preprocessor
from core.devices import DevicePolicy, bytes_on, free_memory, is_out_of_memory, release_memory
from core.dispatch import ExtrasResult
from core.embeddings import EmbeddingLibrary
from core.errors import UserError
from core.events import (
    Event,
    EventChannel,
    EventSink,
    GeneratedImage,
    JobControl,
    Notice,
    Result,
    final_result,
)
from core.extras import ExtrasRequest, postprocessing_text
from core.extras_run import run_extras
from core.families import SDXL
from core.hires import hires_size
from core.hires_pass import (
    HiresSetup,
    cropped,
    decode,
    model_upscaler,
    second_pass_job,
    second_pass_request,
    upscaled_input,
)
from core.image_inputs import PreparedImage, prepare_image
from core.infotext import build_infotext, controlnet_params
from core.job_progress import DiscardEvents, JobClock, step_callback
from core.jobs import Job, make_job, with_controlnet
from core.lora import LoraLibrary, lora_uses
from core.memory_policy import ALL_ON_GPU, MemoryPlan, model_size, plan_memory
from core.model_cache import ActiveModel, ModelCache
from core.outputs import OutputWriter
from core.placement import place_pipeline
from core.request import SAME_CHECKPOINT, ControlNetUnit, GenerationRequest
from core.samplers import make_scheduler
from core.speed import (
    COMPILING_NOTICE,
    SpeedOptions,
    adapters_in_compute_dtype,
    apply_speed_options,
    undo_speed_options,
)
from core.step_cache import cached_deep_blocks
from core.styles import StyleLibrary, with_styles
from core.taesd import TaesdDecoders
from core.upscalers import OVERLAP, TILE, UpscalerCache
from core.vae_memory import vae_within_memory
from core.wire import png_with_text

log = logging.getLogger(__name__)


def resolve_seed(seed: int) -> int:
    """-1 means random, as in A1111."""
    return random.randrange(2**32) if seed == -1 else seed


class Engine:
    """The generation engine. `run()` is a generator of events; the GPU work happens on a worker thread.
    In-process, it is a core.dispatch.Generator; a generation worker process runs one behind core.worker."""

    ready = True  # nothing to wait for in-process
    problem = None
    parallel_jobs = 1

    def __init__(
        self,
        models: ModelCache,
        outputs: OutputWriter,
        policy: DevicePolicy,
        styles: StyleLibrary | None = None,
        speed: Callable[[], SpeedOptions] = SpeedOptions,
        upscaler_tiles: Callable[[], tuple[int, int]] = lambda: (TILE, OVERLAP),
    ):
        self.models = models
        self.speed = speed  # Settings → Optimisations, read at each job
        self.outputs = outputs
        self.policy = policy
        self.styles = styles
        self.embeddings = EmbeddingLibrary(models.registry)
        self.loras = LoraLibrary(models.registry)
        self.taesd = TaesdDecoders(models.registry.folder("vae_approx"), policy.device, policy.dtype)
        self.upscalers = UpscalerCache(models.registry.models_dir, policy.device, policy.dtype, tiles=upscaler_tiles)
        self._device_lock = threading.Lock()  # one job at a time per device, whoever asks

    def close(self) -> None:
        """Nothing to stop: the models go with the process."""

    def run(
        self, request: GenerationRequest, control: JobControl | None = None, mode: str | None = None
    ) -> Iterator[Event]:
        """Validate, then stream Progress/Notice events and finally one Result. UserError for fixable problems.

        `mode` names the outputs folder as A1111 does ("txt2img", "img2img"); by default the request's own
        (img2img when it has an init image; inpainting is saved with img2img, as in A1111).
        """
        request, mode = self.prepare(request, mode)
        control = control or JobControl()
        channel = EventChannel()
        worker = threading.Thread(target=self._work, args=(request, control, channel, mode), daemon=True)
        worker.start()
        try:
            yield from channel
        finally:
            # A consumer that goes away (closed browser tab) must not leave the GPU busy.
            if worker.is_alive():
                control.interrupt()

    def run_here(
        self,
        request: GenerationRequest,
        control: JobControl,
        sink: EventSink,
        mode: str | None,
        styles_applied: bool = False,
    ) -> None:
        """The job on the calling thread (a worker process's main thread, where torch runs fastest): events go to
        `sink.put`, and `sink.close(error)` ends them, with the UserError that stopped the job, if any.
        `styles_applied`: the prompts already hold the request's styles (the web process owns styles.csv)."""
        try:
            request, mode = self.prepare(request, mode, styles_applied)
        except UserError as exc:
            sink.close(exc)
            return
        self._work(request, control, sink, mode)

    def prepare(
        self, request: GenerationRequest, mode: str | None, styles_applied: bool = False
    ) -> tuple[GenerationRequest, str]:
        """The request validated and with its styles applied, and the outputs folder it is saved in."""
        request = request.validated() if styles_applied else self._with_styles(request.validated())
        if mode == "img2img" and request.init_image is None:
            raise UserError("No image: upload the picture to start from.")
        return request, request.mode if mode in (None, "txt2img", "img2img") else mode

    def _with_styles(self, request: GenerationRequest) -> GenerationRequest:
        """The prompts with the request's styles applied, as A1111 writes them in the infotext (which also names
        the styles, so "paste" can take them out again)."""
        return with_styles(request, self.styles)

    def generate(self, request: GenerationRequest, control: JobControl | None = None) -> Result:
        """Run to completion and return the Result (for scripts, tests and the API)."""
        return final_result(self.run(request, control))

    def _work(self, request: GenerationRequest, control: JobControl, channel: EventSink, mode: str) -> None:
        error: BaseException | None = None
        try:
            with self._device_lock:
                if self.policy.note:
                    channel.put(Notice(self.policy.note))
                channel.put(self._generate(request, control, channel, mode))
        except UserError as exc:
            error = exc
        except Exception as exc:  # the server must survive anything a job does
            if is_out_of_memory(exc):
                release_memory(self.policy.device)
                error = UserError(
                    f"Out of GPU memory at {request.width}x{request.height}, batch size {request.batch_size}. "
                    "Try a smaller size or batch size."
                )
            else:
                log.exception("Generation failed")
                error = UserError(f"Generation failed: {type(exc).__name__}: {exc}")
        finally:
            channel.close(error)

    def _generate(self, request: GenerationRequest, control: JobControl, channel: EventSink, mode: str) -> Result:
        if control.interrupted:
            return Result([], interrupted=True)
        prepared = self._prepare(request, channel)
        maps = self._control_maps(request, prepared)
        uses = lora_uses(request.prompt, request.negative_prompt)
        active = self.models.activate(request.checkpoint, request.vae)
        # Set for every job, so a job without LoRAs runs the plain checkpoint whatever the last job used.
        loras = self.loras.apply(active.loaded, uses)
        if active.loaded.fp8_unet and loras.hashes:
            adapters_in_compute_dtype(active.loaded.pipeline.unet, self.policy.dtype)
        for notice in loras.notices:
            channel.put(Notice(notice))
        controls = self._controls(request, active, maps)
        job = self._job(request, active, prepared, controls, channel)
        hires = self._hires_setup(request, active, uses, controls, channel) if request.uses_hires else None
        # Memory is planned for the largest pass the model runs.
        sized = second_pass_request(request) if hires and hires.active is active else request
        plan = self._fit_to_device(sized, active.loaded, job, uses if loras.hashes else [], channel)
        if hires:
            hires.plan = plan if hires.active is active else self._fit_to_device(
                second_pass_request(request), hires.active.loaded, hires.placeholder_job(), uses, channel)  # fmt: skip
        titles = {i: self.models.controlnet_title(unit.model) for i, unit in request.enabled_units}
        extra = {**(hires.infotext if hires else {}), **controlnet_params(request, titles), **loras.infotext}
        seed = resolve_seed(request.seed)
        clock = JobClock(time.perf_counter(), request.n_iter)
        images: list[GeneratedImage] = []
        try:
            prompts, ti_hashes = self._encode_prompts(request, active.loaded, channel)
            if hires:
                hires.prompts = self._hires_prompts(request, hires.active.loaded, prompts, hires.active is active)
            if ti_hashes:
                extra = {**extra, "TI hashes": ti_hashes}
            for batch in range(request.n_iter):
                if control.interrupted:
                    break
                seeds = [seed + batch * request.batch_size + i for i in range(request.batch_size)]
                if hires:
                    pil_images = self._hires_batch(
                        request, job, active.loaded, prompts, hires, seeds, batch, control, channel, clock, plan
                    )
                else:
                    pil_images = self._run_batch(
                        request, job, active.loaded, prompts, seeds, batch, control, channel, clock, plan
                    )
                control.take_skip()
                for image, image_seed in zip(pil_images, seeds, strict=True):
                    infotext = build_infotext(
                        request,
                        seed=image_seed,
                        model_name=active.entry.stem,
                        model_hash=active.model_hash,
                        vae_name=active.vae_name,
                        vae_hash=active.vae_hash,
                        extra=extra,
                    )
                    path = self.outputs.save(image, infotext, mode=mode, seed=image_seed)
                    images.append(GeneratedImage(image, image_seed, infotext, path))
        finally:
            job.release()
        self._save_control_maps(maps, images)
        return Result(images, interrupted=control.interrupted)

    def _control_maps(self, request: GenerationRequest, prepared: PreparedImage | None) -> dict[int, Image.Image]:
        """The maps of the units that can change the image (see ControlNetUnit.is_inert), made before any model
        loads, so a missing annotator is reported at once."""
        annotators = self.models.annotators
        units = [(i, unit) for i, unit in request.enabled_units if not unit.is_inert]
        return {i: control_map(request, unit, prepared, annotators) for i, unit in units}

    @staticmethod
    def _job(request, active: ActiveModel, prepared, controls: list[Control], channel: EventSink) -> Job:
        if not controls:
            return make_job(request, active.loaded, prepared)
        runnable, notice = controllable(request)
        if notice:
            channel.put(Notice(notice))
        job = make_job(runnable, active.loaded, prepared)
        return with_controlnet(job, active.loaded, controls, guided=request.cfg_scale > 1)

    def _controls(self, request: GenerationRequest, active: ActiveModel, maps: dict[int, Image.Image]) -> list[Control]:
        units = dict(request.enabled_units)
        return [
            Control(i, units[i], image, self.models.controlnet(units[i].model, active)) for i, image in maps.items()
        ]

    def _save_control_maps(self, maps: dict[int, Image.Image], images: list[GeneratedImage]) -> None:
        if maps and images and images[0].path is not None and self.outputs.save_control_maps():
            for i, image in maps.items():
                self.outputs.save_control_map(image, images[0].path, i)

    def run_preprocessor(self, unit: ControlNetUnit, image: Image.Image, width: int, height: int) -> Image.Image:
        """The unit's control map of `image` for an output of width x height, as a job would make it (the UI's
        preview). UserError when the preprocessor's weights are missing from models/annotators."""
        with self._device_lock:
            return run_preprocessor(unit, image, width, height, self.models.annotators)

    def run_extras(self, request: ExtrasRequest, save: bool) -> ExtrasResult:
        """Extras: the picture upscaled (core.extras_run), saved under extras-images when `save` (the UI's tab;
        A1111's API does not save), with the source's parameters kept and A1111's "postprocessing" text."""
        request = request.validated()
        with self._device_lock:
            image = run_extras(request, self.upscalers)
        text = postprocessing_text(request)
        path = self.outputs.save_extras(image, request.source_parameters, text) if save else None
        png = png_with_text(image, {"parameters": request.source_parameters, "postprocessing": text})
        return ExtrasResult(png, path, text)

    @staticmethod
    def _prepare(request: GenerationRequest, channel: EventSink) -> PreparedImage | None:
        """The init image and mask made ready before any model loads, so their problems are reported at once."""
        if request.init_image is None:
            return None
        prepared = prepare_image(request)
        for notice in prepared.notices:
            channel.put(Notice(notice))
        return prepared

    def _encode_prompts(self, request: GenerationRequest, loaded, channel: EventSink) -> tuple[JobPrompts, str | None]:
        """Both prompts' conditionings for the whole job (with the checkpoint's embeddings), and the TI hashes of the
        embeddings used. An embedding that does not fit the checkpoint is a Notice; its name is read as words."""
        embeddings = self.embeddings.for_checkpoint(loaded)
        prompts = encode_job_prompts(
            loaded.pipeline,
            loaded.family,
            request.prompt,
            request.negative_prompt,
            request.steps,
            request.clip_skip,
            embeddings,
            embeddings.skipped,
        )
        for notice in prompts.notices:
            channel.put(Notice(notice))
        return prompts, self.embeddings.ti_hashes(prompts.embeddings_used, embeddings)

    def _fit_to_device(self, request: GenerationRequest, loaded, job: Job, loras: list, channel) -> MemoryPlan:
        """The memory plan for the job (core.memory_policy), applied to its pipeline (core.placement), and the
        speed options where everything stays on the device (core.speed). Before the prompts are encoded: the text
        encoders may be offloaded too."""
        pipe = job.pipeline
        device = self.policy.device
        free = free_memory(device)
        if free is not None:  # what this job's models hold now is theirs to place
            free += bytes_on([m for m in pipe.components.values() if isinstance(m, torch.nn.Module)], device)
        plan = plan_memory(
            free,
            model_size(loaded.family.id),
            request.width,
            request.height,
            request.batch_size,
            forced=self.policy.memory_flag,
            is_sdxl=loaded.family is SDXL,
        )
        options = self.speed()
        if plan.level != ALL_ON_GPU:
            undo_speed_options([pipe.unet, pipe.vae])
        place_pipeline(pipe, plan.level, device, loaded.placement)
        if plan.level != ALL_ON_GPU:
            off = " The speed options are off while models are offloaded." if options.any_on_modules else ""
            channel.put(Notice(f"Memory: {plan.name} ({plan.reason}).{off}"))
            return plan
        # A LoRA's adapters sit on the separate query/key/value projections; fp8 layers upcast one by one.
        apply_speed_options(pipe.unet, pipe.vae, options, can_fuse=not loras and not loaded.fp8_unet)
        size = (type(pipe).__name__, request.width, request.height, request.batch_size, request.cfg_scale > 1)
        if options.compile and (key := (*size, *loras)) not in loaded.compiled_keys:
            loaded.compiled_keys.add(key)
            channel.put(Notice(COMPILING_NOTICE))
        return plan

    def _hires_setup(self, request: GenerationRequest, active: ActiveModel, uses, controls, channel) -> HiresSetup:
        """The second pass's checkpoint (the job's own, or Hires checkpoint loaded now with the job's LoRAs), its
        model upscaler, and the ControlNet units that fit it."""
        upscaler = model_upscaler(request, self.upscalers)
        name = request.hr_checkpoint_name
        if name == SAME_CHECKPOINT or self.models.registry.find("checkpoint", name).path == active.entry.path:
            return HiresSetup(active, upscaler, controls)
        other = self.models.activate(name, request.vae)
        for notice in self.loras.apply(other.loaded, uses).notices:
            channel.put(Notice(notice))
        fitting = controls if other.loaded.family is active.loaded.family else []
        if controls and not fitting:
            why = f"{other.entry.stem} is of another family"
            channel.put(Notice(f"The ControlNet units guide the first pass only: {why}."))
        return HiresSetup(other, upscaler, fitting, other_checkpoint=True)

    def _hires_prompts(self, request: GenerationRequest, loaded, prompts: JobPrompts, same_model: bool) -> JobPrompts:
        """The second pass's conditioning: its own prompts and steps (prompt schedules count hires steps, as
        A1111's) through its checkpoint's encoders, or the first pass's where all of those are the same."""
        second = second_pass_request(request)
        same = same_model and (second.prompt, second.negative_prompt, second.steps) == (
            request.prompt, request.negative_prompt, request.steps)  # fmt: skip
        return prompts if same else self._encode_prompts(second, loaded, DiscardEvents())[0]

    def _hires_batch(
        self, request, job: Job, loaded, prompts, hires: HiresSetup, seeds, batch, control, channel, clock, plan
    ) -> list[Image.Image]:
        """Hires fix: the first pass to latents, upscaled, then img2img at the new size (through another checkpoint
        in pixels). Interrupt or Skip in the first pass returns its pictures; in the second, what that has made."""
        latents = self._run_batch(
            request, job, loaded, prompts, seeds, batch, control, channel, clock, plan, output_type="latent"
        )
        second_loaded = hires.active.loaded
        notify = lambda message: channel.put(Notice(message))  # noqa: E731
        with vae_within_memory(job.pipeline.vae, plan.tiled_vae, self.policy.device, notify):
            if control.should_stop_batch:
                return decode(job.pipeline, latents)
            pixels = second_loaded.is_inpainting or second_loaded is not loaded
            start = upscaled_input(job.pipeline, latents, request, hires.upscaler, as_pictures=pixels)
        second = second_pass_request(request)
        hires_job = second_pass_job(second_loaded, hires.controls, start, request, guided=request.cfg_scale > 1)
        try:
            images = self._run_batch(
                second, hires_job, second_loaded, hires.prompts, seeds, batch, control, channel, clock, hires.plan,
                pass_index=1,
            )  # fmt: skip
        finally:
            hires_job.release()
        return cropped(images, hires_size(request))

    def _run_batch(
        self,
        request,
        job: Job,
        loaded,
        prompts: JobPrompts,
        seeds,
        batch,
        control,
        channel,
        clock,
        plan: MemoryPlan,
        output_type: str = "pil",
        pass_index: int = 0,
    ):
        """One pipeline call for the batch's seeds, the same for every task: sampler, progress, previews, stop.
        Pictures, or with output_type "latent" the latents (Hires fix's first pass, `pass_index` 0 of 2)."""
        if job.unchanged is not None:
            return [job.unchanged.copy() for _ in seeds]
        pipe = job.pipeline
        pipe.scheduler = make_scheduler(request.sampler_name, request.scheduler, loaded.scheduler_config)
        if hasattr(pipe.scheduler, "noise_sampler_seed"):
            # DPM++ SDE draws Brownian noise from its own seed; tie it to the image seed for reproducibility.
            pipe.scheduler.noise_sampler_seed = seeds[0]
        taesd = None
        if request.preview_method == "TAESD":
            taesd, why_not = self.taesd.for_family(loaded.family)
            if why_not and batch == 0:
                channel.put(Notice(why_not))
        passes = (pass_index, 2 if output_type == "latent" or pass_index else 1)
        on_step_end = step_callback(
            request, pipe, loaded.family, prompts, batch, control, channel, clock, taesd, passes
        )
        generators = [torch.Generator("cpu").manual_seed(s) for s in seeds]
        kwargs = dict(
            **prompts.pipeline_inputs(len(seeds)),  # our own encoding (A1111's chunks, weights, clip skip)
            num_inference_steps=request.steps,
            guidance_scale=request.cfg_scale,
            generator=generators,
            callback_on_step_end=on_step_end,
            callback_on_step_end_tensor_inputs=["latents", *prompts.callback_inputs()],
            output_type=output_type,
        )
        if plan.tiled_vae and batch == 0:
            channel.put(Notice(f"The VAE works in tiles at this size ({plan.reason})."))
        vae = vae_within_memory(pipe.vae, plan.tiled_vae, self.policy.device, lambda m: channel.put(Notice(m)))
        with torch.inference_mode(), vae, cached_deep_blocks(pipe.unet, request.step_cache):
            kwargs.update(job.inputs(seeds))
            images = pipe(**kwargs).images
        if output_type == "latent":
            return images
        return [job.finish(image) for image in images]
