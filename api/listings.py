"""A1111's read-only routes (models, samplers, styles, memory, flags, png-info) and sd-webui-controlnet's. The lists
are read from models/ at each call, so the refresh routes have nothing to do but answer."""

from __future__ import annotations

import base64
import html
import os
from pathlib import Path
from typing import Any

import anyio
from fastapi import APIRouter

from api.schemas import (
    DetectRequest,
    ExtrasBatchImagesRequest,
    ExtrasSingleImageRequest,
    PngInfoRequest,
    PngInfoResponse,
)
from api.translate import SCHEDULER_NAMES, png_base64, png_info
from core.checkpoint_files import read_shapes
from core.errors import UserError
from core.extras import ExtrasRequest
from core.hires import LATENT_UPSCALERS, PIXEL_UPSCALERS
from core.image_info import image_parameters, image_text_items
from core.preprocessors import PREPROCESSORS
from core.registry import ModelEntry
from core.request import ControlNetUnit, to_image
from core.samplers import SAMPLERS
from core.services import Services
from core.upscaler_files import upscaler_files

SECRET_FLAGS = ("gradio_auth", "api_auth")  # never shown by cmd-flags (A1111 shows them)


def add_listing_routes(router: APIRouter, services: Services, flags: dict[str, Any]) -> None:
    registry = services.registry

    @router.get("/sdapi/v1/sd-models")
    def get_sd_models():
        return [
            {
                "title": registry.title(e),
                "model_name": os.path.splitext(e.name)[0].replace("/", "_"),
                "hash": registry.short_hash(e, compute=False),
                "sha256": _sha256(services, e),
                "filename": str(e.path),
                "config": _config(e),
            }  # fmt: skip
            for e in registry.list("checkpoint")
        ]

    @router.get("/sdapi/v1/sd-vae")
    def get_sd_vaes():
        return [{"model_name": e.name, "filename": str(e.path)} for e in registry.list("vae")]

    @router.get("/sdapi/v1/samplers")
    def get_samplers():
        return [{"name": name, "aliases": [], "options": {}} for name in SAMPLERS]

    @router.get("/sdapi/v1/schedulers")
    def get_schedulers():
        return [
            {"name": name, "label": label, "aliases": None, "default_rho": -1, "need_inner_model": False}
            for label, name in SCHEDULER_NAMES.items()
        ]

    @router.get("/sdapi/v1/loras")
    def get_loras():
        return [{"name": e.stem, "alias": e.stem, "path": str(e.path), "metadata": {}} for e in registry.list("lora")]

    @router.get("/sdapi/v1/embeddings")
    def get_embeddings():
        return {"loaded": {e.stem: _embedding(e) for e in registry.list("embedding")}, "skipped": {}}

    @router.get("/sdapi/v1/prompt-styles")
    def get_prompt_styles():
        styles = services.styles.styles().values() if services.styles else []
        return [{"name": s.name, "prompt": s.prompt, "negative_prompt": s.negative_prompt} for s in styles]

    @router.get("/sdapi/v1/upscalers")
    def get_upscalers():
        built_in = [
            {"name": name, "model_name": None, "model_path": None, "model_url": None, "scale": 4}
            for name in PIXEL_UPSCALERS
        ]
        models = [
            {"name": name, "model_name": name, "model_path": str(path), "model_url": None, "scale": None}
            for name, path in upscaler_files(registry.models_dir).items()
        ]
        return built_in + models

    @router.get("/sdapi/v1/latent-upscale-modes")
    def get_latent_upscale_modes():
        return [{"name": name} for name in LATENT_UPSCALERS]

    for path in ("hypernetworks", "face-restorers", "realesrgan-models", "sd-modules"):
        router.add_api_route(f"/sdapi/v1/{path}", lambda: [], methods=["GET"], name=path)

    @router.get("/internal/ping")
    def ping():  # A1111's; SillyTavern checks the connection with it
        return {}

    @router.get("/sdapi/v1/scripts")
    def get_scripts_list():
        return {"txt2img": ["controlnet"], "img2img": ["controlnet"]}

    for path in ("refresh-checkpoints", "refresh-loras", "refresh-vae", "refresh-embeddings"):
        router.add_api_route(f"/sdapi/v1/{path}", lambda: None, methods=["POST"], name=path)

    @router.get("/sdapi/v1/cmd-flags")
    def get_cmd_flags():
        shown = {key: str(value) if isinstance(value, Path) else value for key, value in flags.items()}
        return shown | {key: "(set)" for key in SECRET_FLAGS if shown.get(key)}

    @router.get("/sdapi/v1/memory")
    def get_memory():
        """The web process's machine RAM; GPU memory is the workers' (listed with their loaded checkpoints)."""
        workers = getattr(services.generator, "status", list)()
        return {"ram": _ram(), "cuda": {"error": "measured by the generation workers"}, "workers": workers}

    @router.post("/sdapi/v1/png-info", response_model=PngInfoResponse)
    def pnginfoapi(body: PngInfoRequest):
        image = to_image(body.image, "image")
        return png_info(image_parameters(image), image_text_items(image))

    add_controlnet_routes(router, services)
    add_extras_routes(router, services)


def add_extras_routes(router: APIRouter, services: Services) -> None:
    """A1111's extra-single-image and extra-batch-images: upscaled in a worker, not saved (as A1111's API)."""

    def run(body, encoded: str, name: str) -> tuple[str, str]:
        if body.gfpgan_visibility or body.codeformer_visibility:
            raise UserError("Face restoration (GFPGAN, CodeFormer) is not available in this studio.")
        request = ExtrasRequest.from_dict(body.model_dump(exclude={"image", "imageList"}))
        image = to_image(encoded, name)
        result = services.generator.run_extras(request.with_image(image), save=False)
        return base64.b64encode(result.png).decode("ascii"), f"<p>{html.escape(result.postprocessing)}</p>"

    @router.post("/sdapi/v1/extra-single-image")
    async def extras_single_image_api(body: ExtrasSingleImageRequest):
        image, info = await anyio.to_thread.run_sync(run, body, body.image, "image")
        return {"html_info": info, "image": image if body.show_extras_results else None}

    @router.post("/sdapi/v1/extra-batch-images")
    async def extras_batch_images_api(body: ExtrasBatchImagesRequest):
        def all_images():
            return [run(body, item.data, f"imageList[{i}]") for i, item in enumerate(body.imageList)]

        results = await anyio.to_thread.run_sync(all_images)
        images = [image for image, _ in results] if body.show_extras_results else []
        return {"html_info": results[-1][1] if results else "", "images": images}


def add_controlnet_routes(router: APIRouter, services: Services) -> None:
    """sd-webui-controlnet's own routes, as its API clients (webuiapi, Krita, openOutpaint…) call them."""
    registry = services.registry

    @router.get("/controlnet/version")
    def version():
        return {"version": 3}

    @router.get("/controlnet/model_list")
    def model_list(update: bool = True):
        return {"model_list": [registry.title(e) for e in registry.list("controlnet")]}

    @router.get("/controlnet/module_list")
    def module_list(alias_names: bool = False):
        return {"module_list": list(PREPROCESSORS), "module_detail": {}}

    @router.get("/controlnet/settings")
    def settings():
        return {"control_net_unit_count": services.settings.controlnet_unit_count}

    @router.post("/controlnet/detect")
    async def detect(body: DetectRequest):
        if body.controlnet_module not in PREPROCESSORS:
            choices = ", ".join(PREPROCESSORS)
            raise UserError(f"Unknown preprocessor {body.controlnet_module!r}; choose one of: {choices}.")
        return await anyio.to_thread.run_sync(run_detect, body)

    def run_detect(body: DetectRequest) -> dict:
        unit = ControlNetUnit(
            module=body.controlnet_module,
            processor_res=body.controlnet_processor_res,
            threshold_a=body.controlnet_threshold_a,
            threshold_b=body.controlnet_threshold_b,
        )
        maps = []
        for index, encoded in enumerate(body.controlnet_input_images or body.controlnet_images):
            image = to_image(encoded, f"controlnet_input_images[{index}]")
            maps.append(png_base64(services.generator.run_preprocessor(unit, image, *image.size)))
        return {"images": maps, "info": "Success"}


def _sha256(services: Services, entry: ModelEntry) -> str | None:
    return services.registry.cache.get(entry.path, "sha256") if entry.path.is_file() else None


def _config(entry: ModelEntry) -> str | None:
    yaml = entry.path.with_suffix(".yaml")
    return str(yaml) if entry.path.is_file() and yaml.is_file() else None


def _embedding(entry: ModelEntry) -> dict[str, Any]:
    """What A1111 lists for an embedding; vectors and width are read from a safetensors header (pickles would
    need torch, which this process does not load)."""
    shape = vectors = None
    if entry.path.suffix.lower() == ".safetensors":
        try:
            shapes = list(read_shapes(entry.path).values())
            vectors, shape = shapes[0][0], shapes[0][-1]
        except (UserError, IndexError):
            pass
    return {"step": None, "sd_checkpoint": None, "sd_checkpoint_name": None, "shape": shape, "vectors": vectors}


def _ram() -> dict[str, int]:
    info: dict[str, int] = {}
    meminfo = Path("/proc/meminfo")
    for line in meminfo.read_text().splitlines() if meminfo.is_file() else []:
        key, _, value = line.partition(":")
        info[key] = int(value.split()[0]) * 1024
    total, free = info.get("MemTotal", 0), info.get("MemAvailable", 0)
    return {"free": free, "used": total - free, "total": total}
