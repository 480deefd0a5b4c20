"""Shared test setup: offline hub, tiny models in an A1111-style models folder, and an engine over them."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

from core.devices import choose_policy  # noqa: E402
from core.engine import Engine  # noqa: E402
from core.model_cache import ModelCache  # noqa: E402
from core.outputs import OutputWriter  # noqa: E402
from core.registry import HashCache, ModelRegistry  # noqa: E402
from core.request import GenerationRequest  # noqa: E402
from tests.fixtures.tiny_models import write_checkpoint, write_controlnet, write_diffusers_folder  # noqa: E402

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory) -> Path:
    """models/ as a user has it: single files in subfolders, a diffusers folder, a VAE, ControlNets."""
    root = tmp_path_factory.mktemp("models")
    ckpts = root / "Stable-diffusion"
    write_checkpoint(ckpts / "sd15" / "tiny-sd1.safetensors", "SD1")
    write_checkpoint(ckpts / "tiny-sdxl.safetensors", "SDXL")
    write_checkpoint(ckpts / "tiny-sd1-inpainting.safetensors", "SD1", inpainting=True)
    write_diffusers_folder(ckpts / "tiny-sd1-diffusers", "SD1")
    for folder in ("Lora", "ControlNet", "VAE", "embeddings"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    write_controlnet(root / "ControlNet" / "tiny-sd1-canny.safetensors", "SD1")
    write_controlnet(root / "ControlNet" / "tiny-sd1-depth.pth", "SD1", seed=1, fmt="pth")
    write_controlnet(root / "ControlNet" / "tiny-sdxl-canny.safetensors", "SDXL")
    return root


def make_engine(
    models_dir: Path, outputs_dir: Path, cache_dir: Path, capacity: int = 2, precision: str = "fp32"
) -> Engine:
    registry = ModelRegistry(models_dir, HashCache(cache_dir / "models.json"))
    policy = choose_policy("cpu", precision)
    models = ModelCache(registry, policy, capacity=lambda: capacity, sd2_prediction=lambda: "v_prediction")
    return Engine(models, OutputWriter(outputs_dir), policy)


@pytest.fixture(scope="session")
def engine(models_dir, tmp_path_factory) -> Engine:
    return make_engine(models_dir, tmp_path_factory.mktemp("outputs"), tmp_path_factory.mktemp("cache"))


def tiny_request(**changes) -> GenerationRequest:
    """A fast request: 64x64 pixels (an 8x8 latent), few steps, previews off unless asked."""
    values = dict(
        prompt="a photo of a cat",
        negative_prompt="blurry",
        checkpoint="sd15/tiny-sd1.safetensors",
        sampler_name="Euler",
        steps=4,
        width=64,
        height=64,
        seed=1234,
        preview_method="None",
    )
    values.update(changes)
    return GenerationRequest(**values)
