"""Times txt2img through our engine against the plain diffusers pipeline on the same model, seed and steps.

Prints seconds per image and the ratio ours/plain for previews off, approximate and full VAE, plus a checkpoint's
cold load and a switch back to a cached one. Random weights run exactly as fast as trained ones.

    .venv/bin/python bench/bench_txt2img.py --preset tiny --size 256 --steps 10          # CPU smoke
    .venv/bin/python bench/bench_txt2img.py --preset sd15 --size 512 --steps 20 --device cuda
    .venv/bin/python bench/bench_txt2img.py --preset sdxl --size 1024 --steps 20 --device cuda
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from diffusers import AutoencoderKL, EulerDiscreteScheduler, UNet2DConditionModel  # noqa: E402
from diffusers.utils import logging as diffusers_logging  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection  # noqa: E402

from core.devices import choose_policy  # noqa: E402
from core.engine import Engine  # noqa: E402
from core.families import FAMILIES  # noqa: E402
from core.model_cache import ModelCache  # noqa: E402
from core.outputs import OutputWriter  # noqa: E402
from core.registry import HashCache, ModelRegistry  # noqa: E402
from core.request import GenerationRequest  # noqa: E402
from tests.fixtures.tiny_models import make_pipeline, tiny_components  # noqa: E402
from training.ldm_export import to_ldm_state_dict  # noqa: E402

SD15_UNET = dict(
    block_out_channels=[320, 640, 1280, 1280],
    layers_per_block=2,
    down_block_types=["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
    up_block_types=["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
    cross_attention_dim=768,
    attention_head_dim=8,
    sample_size=64,
)
SDXL_UNET = dict(
    block_out_channels=[320, 640, 1280],
    layers_per_block=2,
    down_block_types=["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    up_block_types=["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    transformer_layers_per_block=[1, 2, 10],
    cross_attention_dim=2048,
    attention_head_dim=[5, 10, 20],
    use_linear_projection=True,
    addition_embed_type="text_time",
    addition_time_embed_dim=256,
    projection_class_embeddings_input_dim=2816,
    sample_size=128,
)
SD_VAE = dict(
    block_out_channels=[128, 256, 512, 512],
    layers_per_block=2,
    down_block_types=["DownEncoderBlock2D"] * 4,
    up_block_types=["UpDecoderBlock2D"] * 4,
    latent_channels=4,
)
CLIP_L = dict(
    hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12, hidden_act="quick_gelu"
)
BIG_G = dict(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=20, hidden_act="gelu")


def real_size_components(preset: str) -> tuple[str, dict[str, torch.nn.Module]]:
    """Real SD1.5 / SDXL dimensions with random weights."""
    common = dict(vocab_size=49408, max_position_embeddings=77, bos_token_id=49406, eos_token_id=49407)
    if preset == "sd15":
        family = "SD1"
        parts = {
            "unet": UNet2DConditionModel(**SD15_UNET),
            "text_encoder": CLIPTextModel(CLIPTextConfig(**CLIP_L, **common)),
        }
    else:
        family = "SDXL"
        parts = {
            "unet": UNet2DConditionModel(**SDXL_UNET),
            "text_encoder": CLIPTextModel(CLIPTextConfig(**CLIP_L, **common)),
            "text_encoder_2": CLIPTextModelWithProjection(CLIPTextConfig(**BIG_G, projection_dim=1280, **common)),
        }
    parts["vae"] = AutoencoderKL(**SD_VAE, scaling_factor=FAMILIES[family].vae_scaling_factor)
    return family, parts


def build(preset: str) -> tuple[str, dict[str, torch.nn.Module]]:
    if preset == "tiny":
        return "SD1", tiny_components("SD1")
    return real_size_components(preset)


def plain_pipeline(family: str, parts: dict, policy):
    """The plain diffusers pipeline with the same components, as its docs show it."""
    pipe = make_pipeline(family)
    for name, module in parts.items():
        setattr(pipe, name, module)
        pipe.register_modules(**{name: module})
    pipe.scheduler = EulerDiscreteScheduler.from_config(FAMILIES[family].scheduler_config)
    pipe.to(policy.device, policy.dtype)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device, repeats: int) -> float:
    fn()  # warm-up: kernels, allocator, first-call caches
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_setup(doc: str, repeats: int = 3, add_arguments=None):
    """The flags every bench takes (and the bench's own, from `add_arguments(parser)`), the device policy, and the
    model's components (seeded: the same weights in every process that builds them)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=["tiny", "sd15", "sdxl"], default="tiny")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=repeats)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto")
    if add_arguments is not None:
        add_arguments(parser)
    args = parser.parse_args()
    diffusers_logging.set_verbosity_error()
    torch.manual_seed(0)
    policy = choose_policy(args.device, args.precision)
    family, parts = build(args.preset)
    for module in parts.values():
        module.eval().requires_grad_(False)
    return args, policy, family, parts


def write_bench_checkpoint(family: str, parts: dict, work: Path) -> Path:
    """The components as an fp16 single-file checkpoint, work/models/Stable-diffusion/bench.safetensors (what
    the engine loads); returns its folder."""
    ckpt_dir = work / "models" / "Stable-diffusion"
    ckpt_dir.mkdir(parents=True)
    state = {k: v.to(torch.float16).contiguous() for k, v in to_ldm_state_dict(family, parts).items()}
    save_file(state, ckpt_dir / "bench.safetensors")
    return ckpt_dir


PROMPT = "a photograph of an astronaut riding a horse"


def bench_request(args, method: str = "None", every: int = 1) -> GenerationRequest:
    """Our request for the same work the plain pipeline does (Euler, CFG 7, seed 1), with the given previews."""
    return GenerationRequest(
        prompt=PROMPT,
        checkpoint="bench.safetensors",
        sampler_name="Euler",
        steps=args.steps,
        cfg_scale=7.0,
        width=args.size,
        height=args.size,
        seed=1,
        preview_method=method,
        preview_every_n_steps=every,
    )


def run_plain_once(plain, args):
    """One image from the plain pipeline, as its docs call it, for the same work as bench_request."""
    return plain(
        prompt=PROMPT,
        negative_prompt="",
        num_inference_steps=args.steps,
        guidance_scale=7.0,
        width=args.size,
        height=args.size,
        generator=torch.Generator("cpu").manual_seed(1),
    ).images[0]


def main() -> None:
    args, policy, family, parts = bench_setup(__doc__)
    work = Path(tempfile.mkdtemp(prefix="bench-"))
    try:
        ckpt_dir = write_bench_checkpoint(family, parts, work)
        shutil.copy(ckpt_dir / "bench.safetensors", ckpt_dir / "other.safetensors")

        plain = plain_pipeline(family, parts, policy)

        plain_s = timed(lambda: run_plain_once(plain, args), policy.device, args.repeats)
        plain.to("cpu")  # free the device for the engine's copy
        parts.clear()

        registry = ModelRegistry(work / "models", HashCache(work / "cache.json"))
        models = ModelCache(registry, policy, capacity=lambda: 2, sd2_prediction=lambda: "epsilon")
        engine = Engine(models, OutputWriter(work / "outputs"), policy)
        sync(policy.device)
        start = time.perf_counter()
        models.activate("bench.safetensors")
        sync(policy.device)
        cold_load = time.perf_counter() - start
        models.activate("other.safetensors")
        start = time.perf_counter()
        models.activate("bench.safetensors")
        switch_back = time.perf_counter() - start

        print(
            f"device: {policy.device} ({torch.cuda.get_device_name() if policy.device.type == 'cuda' else 'CPU'}), "
            f"precision {policy.precision_name}, preset {args.preset}, {args.size}x{args.size}, {args.steps} steps, "
            f"Euler, CFG 7, median of {args.repeats}"
        )
        print(f"{'run':<34}{'s/image':>10}{'it/s':>9}{'ours/plain':>12}")
        print(f"{'plain diffusers pipeline':<34}{plain_s:>10.3f}{args.steps / plain_s:>9.2f}{1.0:>12.3f}")
        for method, every in (("None", 1), ("Approximate", 1), ("Full VAE", 5), ("Full VAE", 1)):
            request = bench_request(args, method, every)
            seconds = timed(lambda r=request: engine.generate(r), policy.device, args.repeats)
            label = f"engine, previews {method}" + (f" every {every}" if method != "None" else "")
            print(f"{label:<34}{seconds:>10.3f}{args.steps / seconds:>9.2f}{seconds / plain_s:>12.3f}")
        print(f"checkpoint cold load (file → {policy.device}): {cold_load:.2f} s")
        print(f"switch back to a cached checkpoint: {switch_back * 1000:.1f} ms")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
