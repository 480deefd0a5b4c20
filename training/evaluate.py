"""Measures what the shipped shapes models can do, through the app's own engine: prompts never seen in training,
fixed seeds, pixel measurements only (colour, background, position, shape; ControlNet edge IoU; LoRA stripes).

    .venv/bin/python -m training.evaluate [--prompts 120] [--controls 40] [--loras 40]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from core.devices import choose_policy
from core.engine import Engine
from core.model_cache import ModelCache
from core.outputs import OutputWriter
from core.registry import HashCache, ModelRegistry
from core.request import ControlNetUnit, GenerationRequest
from training.measure import edge_iou, measure, score, stripe_strength
from training.models import CHECKPOINT, CONTROLNET, LORA, MODELS, RESOLUTION
from training.scenes import canny_map, evaluation_prompts, render

SAMPLING = dict(sampler_name="DPM++ 2M", scheduler="Karras", steps=20, cfg_scale=6.0, preview_method="None")
STRIPED = 0.04  # stripe_strength above which an object counts as striped (flat renders give 0, striped ~0.2)


def make_engine(work: Path) -> Engine:
    registry = ModelRegistry(MODELS, HashCache(work / "models.json"))
    policy = choose_policy("auto", "auto")
    models = ModelCache(registry, policy, capacity=lambda: 1, sd2_prediction=lambda: "epsilon")
    return Engine(models, OutputWriter(work / "outputs"), policy)


def generate(engine: Engine, prompt: str, seed: int, **extra):
    request = GenerationRequest(
        prompt=prompt,
        checkpoint=CHECKPOINT.relative_to(MODELS / "Stable-diffusion").as_posix(),
        width=RESOLUTION,
        height=RESOLUTION,
        seed=seed,
        **SAMPLING,
        **extra,
    )
    return engine.generate(request).images[0].image


def evaluate_prompts(engine: Engine, count: int) -> dict:
    totals = {"colour": 0, "background": 0, "position": 0, "shape": 0, "all": 0}
    prompts = evaluation_prompts(count)
    for seed, item in enumerate(prompts):
        result = score(measure(generate(engine, item.prompt, seed)), item.scene)
        result["all"] = all(result.values())
        for key, ok in result.items():
            totals[key] += ok
    return {key: round(100 * value / len(prompts), 1) for key, value in totals.items()} | {"prompts": len(prompts)}


def evaluate_controlnet(engine: Engine, count: int) -> dict:
    """The prompt names no position; the control edges come from a render of the scene at its held-out position,
    so only the ControlNet can put the object there. Baseline: the same prompt and seed without it."""
    with_control, without, placed = [], [], 0
    for seed, item in enumerate(evaluation_prompts(count, seed=77)):
        picture = render(item.scene)
        edges = canny_map(picture)
        obj = item.scene.objects[0]
        prompt = f"a {obj.colour} {obj.shape} on a {item.scene.background} background"
        unit = ControlNetUnit(
            image=picture, module="canny", model=CONTROLNET.name, processor_res=RESOLUTION, pixel_perfect=True
        )
        guided = generate(engine, prompt, seed, controlnet_units=(unit,))
        with_control.append(edge_iou(guided, edges))
        without.append(edge_iou(generate(engine, prompt, seed), edges))
        placed += score(measure(guided), item.scene)["position"]
    return {
        "edge_iou_with_controlnet": round(float(np.mean(with_control)), 3),
        "edge_iou_without": round(float(np.mean(without)), 3),
        "position_with_controlnet": round(100 * placed / count, 1),
        "scenes": count,
    }


def evaluate_lora(engine: Engine, count: int) -> dict:
    """Stripe strength at LoRA weight 0 (which is no LoRA) and 1, same prompts and seeds: the means, the shares above
    STRIPED, and how often the picture at 1 is the more striped of the pair."""
    name = LORA.stem
    strengths = {0: [], 1: []}
    for seed, item in enumerate(evaluation_prompts(count, seed=99)):
        for weight in strengths:
            picture = generate(engine, f"{item.prompt} <lora:{name}:{weight}>", seed)
            strengths[weight].append(stripe_strength(picture, measure(picture)))
    at_0, at_1 = np.array(strengths[0]), np.array(strengths[1])
    return {
        "stripes_at_0": round(float(at_0.mean()), 4),
        "stripes_at_1": round(float(at_1.mean()), 4),
        "striped_share_at_0": round(100 * float(np.mean(at_0 > STRIPED)), 1),
        "striped_share_at_1": round(100 * float(np.mean(at_1 > STRIPED)), 1),
        "more_striped_at_1": round(100 * float(np.mean(at_1 > at_0)), 1),
        "prompts": count,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=120)
    parser.add_argument("--controls", type=int, default=40)
    parser.add_argument("--loras", type=int, default=40)
    parser.add_argument("--out", type=Path, help="also write the results as JSON here")
    args = parser.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as work:
        engine = make_engine(Path(work))
        results = {"prompts": evaluate_prompts(engine, args.prompts)} if args.prompts else {}
        if args.controls and CONTROLNET.exists():
            results["controlnet"] = evaluate_controlnet(engine, args.controls)
        if args.loras and LORA.exists():
            results["lora"] = evaluate_lora(engine, args.loras)
    results["seconds"] = round(time.perf_counter() - started)
    text = json.dumps(results, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
