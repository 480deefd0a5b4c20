"""What a running batch reports each step: the job's clock and time left, and diffusers' step callback that sends
Progress (with previews), checks Interrupt/Skip and swaps the prompt's conditioning where prompt editing says."""

from __future__ import annotations

import time
from dataclasses import dataclass

from core.conditioning import JobPrompts
from core.events import Event, Progress
from core.families import Family
from core.previews import DenoisedTracker, make_previewer
from core.request import GenerationRequest


@dataclass(frozen=True)
class JobClock:
    started: float
    batch_count: int

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def eta(self, batch: int, step: int, total_steps: int) -> float | None:
        """Seconds left for the whole job, from the fraction done so far."""
        done = (batch + step / total_steps) / self.batch_count
        return self.elapsed() / done * (1 - done) if done > 0 else None


class DiscardEvents:
    """An event sink for work whose notices were already given (the second pass's prompt encoding)."""

    def put(self, event: Event) -> None:
        pass

    def close(self, error: BaseException | None = None) -> None:
        pass


def step_callback(
    request: GenerationRequest,
    pipe,
    family: Family,
    prompts: JobPrompts,
    batch,
    control,
    channel,
    clock,
    taesd=None,
    passes: tuple[int, int] = (0, 1),
):
    """diffusers' callback_on_step_end: Progress with an occasional preview, the stop flag checked each step, and
    the prompt's conditioning for the next step where prompt editing or alternation changes it."""
    tracker = DenoisedTracker(pipe.scheduler)
    previewer = make_previewer(request.preview_method, pipe, family, taesd)

    def on_step_end(pipeline, i, t, tensors):
        if control.should_stop_batch:
            pipeline._interrupt = True
        # Second-order samplers (Heun, DPM2…) take more model calls than steps, and img2img runs only
        # int(steps x strength): count what the loop runs.
        step, total = i + 1, pipeline.num_timesteps
        preview = None
        if previewer and step % request.preview_every_n_steps == 0 and step < total:
            preview = previewer(tracker.denoised(tensors["latents"]))
        channel.put(
            Progress(
                step=step,
                total_steps=total,
                batch_index=batch,
                batch_count=request.n_iter,
                elapsed=clock.elapsed(),
                eta=clock.eta(batch, step, total),
                preview=preview,
                pass_index=passes[0],
                passes=passes[1],
            )
        )
        if prompts.changes_over_steps:
            tensors.update(prompts.tensors_for_step(i + 1, tensors, pipeline.do_classifier_free_guidance))
        return tensors

    return on_step_end
