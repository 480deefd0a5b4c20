"""A1111's request and response bodies (modules/api/models.py of A1111 1.10): the same field names, types and
defaults, so a client written for A1111 sends what it always sent. FastAPI checks them and answers 422 naming the
field; core.request.GenerationRequest checks the values."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Processing(BaseModel):
    """The fields txt2img and img2img share (A1111's StableDiffusionProcessing, with its defaults)."""

    model_config = ConfigDict(extra="ignore")  # as A1111: fields of newer or other versions are ignored

    prompt: str = ""
    negative_prompt: str | None = ""
    styles: list[str] | None = None
    seed: int = -1
    subseed: int = -1
    subseed_strength: float = 0
    seed_resize_from_h: int = -1
    seed_resize_from_w: int = -1
    sampler_name: str | None = None
    scheduler: str | None = None
    batch_size: int = 1
    n_iter: int = 1
    steps: int = 50
    cfg_scale: float = 7.0
    width: int = 512
    height: int = 512
    restore_faces: bool | None = None
    tiling: bool | None = None
    do_not_save_samples: bool = False
    do_not_save_grid: bool = False
    eta: float | None = None
    s_min_uncond: float | None = None
    s_churn: float | None = None
    s_tmax: float | None = None
    s_tmin: float | None = None
    s_noise: float | None = None
    override_settings: dict[str, Any] | None = None
    override_settings_restore_afterwards: bool = True
    refiner_checkpoint: str | None = None
    refiner_switch_at: float | None = None
    disable_extra_networks: bool = False
    comments: dict[str, Any] | None = None
    sampler_index: str = Field("Euler", description="The sampler when sampler_name is not given (A1111's old name).")
    script_name: str | None = None
    script_args: list[Any] = Field(default_factory=list)
    send_images: bool = True
    save_images: bool = False
    alwayson_scripts: dict[str, Any] = Field(default_factory=dict)
    force_task_id: str | None = None
    infotext: str | None = Field(None, description="An image's infotext whose values fill the fields not given.")


class Txt2ImgRequest(_Processing):
    enable_hr: bool = False
    denoising_strength: float | None = 0.75
    firstphase_width: int = 0
    firstphase_height: int = 0
    hr_scale: float = 2.0
    hr_upscaler: str | None = None
    hr_second_pass_steps: int = 0
    hr_resize_x: int = 0
    hr_resize_y: int = 0
    hr_checkpoint_name: str | None = None
    hr_sampler_name: str | None = None
    hr_scheduler: str | None = None
    hr_prompt: str = ""
    hr_negative_prompt: str = ""
    firstpass_image: str | None = None


class Img2ImgRequest(_Processing):
    init_images: list[str] | None = Field(None, description="base64 images (PNG, JPEG…); the first one is used.")
    resize_mode: int = 0
    image_cfg_scale: float | None = None
    mask: str | None = Field(None, description="base64 mask: white is repainted.")
    mask_blur_x: int = 4
    mask_blur_y: int = 4
    mask_blur: int | None = None
    mask_round: bool = True
    inpainting_fill: int = 0
    inpaint_full_res: bool = True
    inpaint_full_res_padding: int = 0
    inpainting_mask_invert: int = 0
    initial_noise_multiplier: float | None = None
    latent_mask: str | None = None
    denoising_strength: float = 0.75
    include_init_images: bool = False


class ImagesResponse(BaseModel):
    images: list[str] | None = Field(None, description="The generated images, base64 PNG with their infotext.")
    parameters: dict[str, Any]
    info: str = Field(description="A JSON string: seeds, prompts, model, infotexts… (A1111's Processed.js()).")


class PngInfoRequest(BaseModel):
    image: str = Field(description="A base64 image")


class PngInfoResponse(BaseModel):
    info: str
    items: dict[str, Any]
    parameters: dict[str, Any]


class ProgressResponse(BaseModel):
    progress: float
    eta_relative: float
    state: dict[str, Any]
    current_image: str | None = None
    textinfo: str | None = None


class DetectRequest(BaseModel):
    """sd-webui-controlnet's POST /controlnet/detect."""

    controlnet_module: str = "none"
    controlnet_input_images: list[str] = Field(default_factory=list)
    controlnet_images: list[str] = Field(default_factory=list, description="webuiapi's name for the same list")
    controlnet_processor_res: int = 512
    controlnet_threshold_a: float = -1
    controlnet_threshold_b: float = -1
    low_vram: bool = False


class _ExtrasBase(BaseModel):
    """A1111's ExtrasBaseRequest."""

    resize_mode: int = Field(0, description="0: upscale by upscaling_resize; 1: to upscaling_resize_w x _h")
    show_extras_results: bool = True
    gfpgan_visibility: float = 0
    codeformer_visibility: float = 0
    codeformer_weight: float = 0
    upscaling_resize: float = 2
    upscaling_resize_w: int = 512
    upscaling_resize_h: int = 512
    upscaling_crop: bool = True
    upscaler_1: str = "None"
    upscaler_2: str = "None"
    extras_upscaler_2_visibility: float = 0
    upscale_first: bool = False


class ExtrasSingleImageRequest(_ExtrasBase):
    image: str = Field("", description="The picture, base64")


class FileData(BaseModel):
    data: str = Field(description="base64 of the file")
    name: str = ""


class ExtrasBatchImagesRequest(_ExtrasBase):
    imageList: list[FileData] = Field(default_factory=list, max_length=64)  # noqa: N815 (A1111's field name)
