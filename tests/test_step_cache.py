"""Step caching (core.step_cache): the deep blocks really run on every N-th UNet call only, a seed still gives one
picture, the infotext says how it was made, and on the shipped shapes model the pictures still obey their prompts
as often as uncached ones (40 held-out prompts)."""

from __future__ import annotations

import numpy as np
import pytest

from core.infotext import request_fields
from core.request import GenerationRequest
from core.starter import STARTER_CHECKPOINT, STARTER_RESOLUTION
from tests.conftest import make_engine, tiny_request
from training.measure import measure, score
from training.models import MODELS
from training.scenes import evaluation_prompts


def deep_computations(engine, request) -> tuple[int, int]:
    """(UNet calls, real runs of the mid block) during one job."""
    unet = engine.models.activate(request.checkpoint).loaded.pipeline.unet
    counts = {"unet": 0, "mid": 0}
    hooks = [
        unet.register_forward_pre_hook(lambda *_: counts.__setitem__("unet", counts["unet"] + 1)),
        # A module inside the mid block: its hook fires only when the block really computes (not on a replay).
        unet.mid_block.resnets[0].register_forward_pre_hook(lambda *_: counts.__setitem__("mid", counts["mid"] + 1)),
    ]
    try:
        engine.generate(request)
    finally:
        for hook in hooks:
            hook.remove()
    return counts["unet"], counts["mid"]


@pytest.mark.parametrize("interval", [2, 3])
def test_the_deep_blocks_run_on_every_nth_call_only(engine, interval):
    calls, mid_runs = deep_computations(engine, tiny_request(steps=9, step_cache=interval))
    assert calls == 9 and mid_runs == len(range(0, 9, interval))
    assert deep_computations(engine, tiny_request(steps=9)) == (9, 9)  # off again for the next job


def test_a_cached_job_is_repeatable_differs_from_uncached_and_says_so(engine):
    cached = engine.generate(tiny_request(seed=21, steps=8, step_cache=3)).images[0]
    again = engine.generate(tiny_request(seed=21, steps=8, step_cache=3)).images[0]
    uncached = engine.generate(tiny_request(seed=21, steps=8)).images[0]
    assert np.array_equal(np.asarray(cached.image), np.asarray(again.image))
    assert not np.array_equal(np.asarray(cached.image), np.asarray(uncached.image))
    assert "Step cache: 3" in cached.infotext and "Step cache" not in uncached.infotext
    assert GenerationRequest.from_dict(request_fields(cached.infotext)).step_cache == 3


def test_a_step_cache_out_of_range_is_refused(engine):
    from core.errors import UserError

    with pytest.raises(UserError, match="Step cache must be 0"):
        engine.generate(tiny_request(step_cache=11))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255**2 / mse)) if mse else float("inf")


def test_cached_pictures_obey_their_prompts_as_often_as_uncached(tmp_path):
    engine = make_engine(MODELS, tmp_path / "outputs", tmp_path / "cache", capacity=1)
    prompts = evaluation_prompts(40, seed=77)
    right = {0: {"colour": 0, "position": 0, "shape": 0}, 3: {"colour": 0, "position": 0, "shape": 0}}
    psnrs = []
    for seed, prompt in enumerate(prompts):
        pictures = {}
        for interval in right:
            request = GenerationRequest(
                prompt=prompt.prompt,
                checkpoint=STARTER_CHECKPOINT,
                width=STARTER_RESOLUTION,
                height=STARTER_RESOLUTION,
                seed=seed,
                sampler_name="DPM++ 2M",
                scheduler="Karras",
                steps=20,
                cfg_scale=6.0,
                preview_method="None",
                step_cache=interval,
            )
            pictures[interval] = engine.generate(request).images[0].image
            result = score(measure(pictures[interval]), prompt.scene)
            for key in right[interval]:
                right[interval][key] += result[key]
        psnrs.append(psnr(np.asarray(pictures[0]), np.asarray(pictures[3])))
    print(f"step cache 3 vs none on 40 prompts: {right}, PSNR median {np.median(psnrs):.1f} dB")
    for key in ("colour", "position", "shape"):
        uncached, cached = (100 * right[i][key] / len(prompts) for i in (0, 3))
        assert cached >= uncached - 3, f"{key}: {cached:.1f} % cached against {uncached:.1f} % uncached"
