"""Step caching (DeepCache's method): the UNet's deep blocks change little between neighbouring steps, so they run
on every N-th UNet call only; the calls between reuse their last outputs and compute just the shallow path
(conv_in, the first down block, the last up block, conv_out), which keeps the detail of the current step.

Written here rather than taken from a library: diffusers' own cache hooks (FasterCache, FirstBlockCache,
Pyramid Attention Broadcast) cover its transformer models, not UNet2DConditionModel, and the DeepCache package
(0.1.1, 2023) replaces the UNet's forward with a copy of diffusers 0.24's, which diffusers 0.42's UNet no longer
matches. This hook keeps diffusers' own forward (SDXL's added conditioning, ControlNet residuals, LoRA) and only
wraps the deep blocks' forward on the UNet instance, for one job, as core.previews wraps the scheduler's step.

Counted in UNet calls, not sampler steps (second-order samplers call the UNet twice a step); the first call of a
job always runs in full. N = 0 (or 1) is off."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator

STEP_CACHE_PRESETS = {"Off": 0, "Fast": 2, "Faster": 3}  # Settings → Optimisations; the infotext says the N
MAX_STEP_CACHE = 10


def deep_blocks(unet) -> list:
    """What a cached call skips: every down block but the first, the mid block, every up block but the last."""
    return [*unet.down_blocks[1:], *([unet.mid_block] if unet.mid_block is not None else []), *unet.up_blocks[:-1]]


@contextlib.contextmanager
def cached_deep_blocks(unet, interval: int) -> Iterator[None]:
    """For one job: the deep blocks run on UNet calls 0, N, 2N, … and replay their outputs in between."""
    if interval < 2:
        yield
        return
    state = {"calls": 0, "full": True}
    wrapped = [unet, *deep_blocks(unet)]
    # What each module's instance holds now (a compiled forward, core.speed), to give it back afterwards.
    own = {id(module): vars(module).get("forward") for module in wrapped}
    original_forward = unet.forward

    @functools.wraps(original_forward)
    def counted(*args, **kwargs):
        state["full"] = state["calls"] % interval == 0
        state["calls"] += 1
        return original_forward(*args, **kwargs)

    unet.forward = counted
    for block in wrapped[1:]:
        block.forward = _replaying(block.forward, state)
    try:
        yield
    finally:
        for module in wrapped:
            if own[id(module)] is None:
                del module.forward  # back to the class's forward
            else:
                module.forward = own[id(module)]


def _replaying(forward, state: dict):
    cache: dict[str, object] = {}

    @functools.wraps(forward)
    def run(*args, **kwargs):
        if state["full"] or "output" not in cache:
            cache["output"] = forward(*args, **kwargs)
        return cache["output"]

    return run
