"""What the REST API reads from an A1111 client's body (no server): sampler names, override_settings, options,
ControlNet units with their aliases, the login check, the job board and the workers' first-come-first-served line."""

from __future__ import annotations

import base64
import io
import threading
import time
from types import SimpleNamespace

import pytest
from PIL import Image

from api.guard import login_ok
from api.options import MAX_OPTION_KEYS, apply_options, read_options
from api.schemas import Img2ImgRequest, Txt2ImgRequest
from api.translate import build_request, png_info
from core.errors import UserError
from core.events import JobControl, Progress
from core.infotext import build_infotext
from core.job_board import JobBoard
from core.registry import HashCache, ModelRegistry
from core.settings import Settings
from core.worker_pool import WorkerPool


@pytest.fixture(scope="module")
def registry(models_dir, tmp_path_factory) -> ModelRegistry:
    return ModelRegistry(models_dir, HashCache(tmp_path_factory.mktemp("api-cache") / "models.json"))


def request(registry, settings=None, cls=Txt2ImgRequest, **body):
    return build_request(cls(**body), settings or Settings(), registry, "sd15/tiny-sd1.safetensors")


def b64(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def test_a1111_defaults_and_the_old_sampler_index(registry):
    job = request(registry, prompt="p")
    assert (job.sampler_name, job.scheduler, job.steps, job.cfg_scale, job.width) == ("Euler", "Automatic", 50, 7, 512)
    assert job.checkpoint == "sd15/tiny-sd1.safetensors" and job.vae == "Automatic" and job.clip_skip == 1
    assert request(registry, sampler_index="DPM++ 2M Karras").scheduler == "Karras"
    named = request(registry, sampler_name="DPM++ 2M", sampler_index="Euler", scheduler="karras")
    assert (named.sampler_name, named.scheduler) == ("DPM++ 2M", "Karras")  # sampler_name wins; scheduler by name
    assert request(registry, sampler_name="DPM++ 2M", scheduler="sgm_uniform").scheduler == "SGM Uniform"


def test_hires_fields_with_a1111s_none_for_the_same(registry):
    job = request(registry, enable_hr=True, hr_scale=1.5, hr_upscaler=None, hr_sampler_name=None, hr_scheduler="karras",
                  denoising_strength=0.4)  # fmt: skip
    assert (job.enable_hr, job.hr_scale, job.hr_upscaler, job.denoising_strength) == (True, 1.5, "Latent", 0.4)
    assert (job.hr_sampler_name, job.hr_scheduler) == ("Use same sampler", "Karras")
    assert request(registry, hr_scale=3).enable_hr is False  # the fields mean nothing without enable_hr
    other = request(registry, enable_hr=True, hr_checkpoint_name="tiny-sdxl")
    assert other.hr_checkpoint_name == "tiny-sdxl.safetensors"
    with pytest.raises(UserError, match="No checkpoint 'nope'"):
        request(registry, enable_hr=True, hr_checkpoint_name="nope")


def test_override_settings_choose_checkpoint_vae_and_clip_skip(registry):
    job = request(registry, override_settings={"sd_model_checkpoint": "tiny-sdxl", "CLIP_stop_at_last_layers": 2,
                                               "sd_vae": "None"})  # fmt: skip
    assert (job.checkpoint, job.clip_skip, job.vae) == ("tiny-sdxl.safetensors", 2, "None")
    entry = registry.find("checkpoint", "sd15/tiny-sd1.safetensors")
    title = f"{entry.name} [{registry.short_hash(entry)}]"
    assert request(registry, override_settings={"sd_model_checkpoint": title}).checkpoint == entry.name
    with pytest.raises(UserError, match="No checkpoint 'missing'; choose one of: .*tiny-sdxl"):
        request(registry, override_settings={"sd_model_checkpoint": "missing"})
    settings = Settings(api_options={"CLIP_stop_at_last_layers": 3})
    assert request(registry, settings).clip_skip == 3  # the options' default for every API job


def test_an_infotext_fills_what_the_body_leaves_out(registry):
    text = build_infotext(request(registry, prompt="from infotext", steps=9, seed=5, sampler_name="Euler a",
                                  width=64, height=64), seed=5, model_name="tiny-sd1", model_hash=None)  # fmt: skip
    job = request(registry, infotext=text, steps=3)
    assert (job.prompt, job.steps, job.seed, job.sampler_name, job.width) == ("from infotext", 3, 5, "Euler a", 64)


def test_img2img_images_and_mask_blur_as_a1111_reads_them(registry):
    image = b64(Image.new("RGB", (64, 64), (1, 2, 3)))
    job = request(registry, cls=Img2ImgRequest, init_images=[image], mask=image, mask_blur_x=2, mask_blur_y=6)
    assert job.init_image.size == (64, 64) and job.mask is not None and job.mask_blur == 6
    assert job.inpaint_full_res is True and job.inpainting_fill == 0  # A1111's API defaults (not its UI's)
    assert request(registry, cls=Img2ImgRequest, init_images=[image], mask_blur=0).mask_blur == 0
    with pytest.raises(UserError, match=r"init_images\[0\] is not an image"):
        request(registry, cls=Img2ImgRequest, init_images=["%%%"])


def test_controlnet_units_under_any_case_with_the_old_aliases(registry):
    image = b64(Image.new("RGB", (64, 64)))
    entry = registry.find("controlnet", "tiny-sd1-canny")
    args = [{"input_image": image, "module": "canny", "model": f"tiny-sd1-canny [{registry.short_hash(entry)}]",
             "guidance": 0.5, "resize_mode": "Inner Fit (Scale to Fit)", "control_mode": "My prompt is more important",
             "lowvram": True},
            {"image": {"image": image, "mask": None}, "module": "none", "model": "tiny-sd1-canny",
             "enabled": False}]  # fmt: skip
    for key in ("ControlNet", "controlnet", "CONTROLNET"):
        first, second = request(registry, alwayson_scripts={key: {"args": args}}).controlnet_units
        assert first.model == entry.name and first.guidance_end == 0.5 and first.resize_mode == 1
        assert first.control_mode == 1 and first.image.size == (64, 64) and second.enabled is False
    with pytest.raises(UserError, match="ADetailer.*not installed"):
        request(registry, alwayson_scripts={"ADetailer": {"args": [True]}})
    with pytest.raises(UserError, match=r"args\[0\]: no ControlNet model 'nope'"):
        request(registry, alwayson_scripts={"controlnet": {"args": [{"model": "nope", "image": image}]}})


def test_what_this_studio_cannot_do_yet_is_refused_by_name(registry):
    refused = {"script_name": "x/y/z plot", "restore_faces": True, "subseed_strength": 0.5}
    for name, value in refused.items():
        with pytest.raises(UserError, match=name):
            request(registry, **{name: value})


def test_options_keep_unknown_keys_and_map_known_ones(registry):
    settings = Settings()
    options = read_options(settings, registry, "sd15/tiny-sd1.safetensors")
    assert options["sd_model_checkpoint"].startswith("sd15/tiny-sd1.safetensors") and options["samples_format"] == "png"
    options.update(sd_model_checkpoint="tiny-sdxl", some_extension={"a": 1}, show_progress_every_n_steps=-1)
    changed = apply_options(options, settings, registry)  # the whole dict, posted back as read
    assert changed.default_checkpoint == "tiny-sdxl.safetensors" and changed.preview_method == "None"
    assert changed.api_options["some_extension"] == {"a": 1} and settings.api_options == {}  # a new Settings
    assert read_options(changed, registry, None)["some_extension"] == {"a": 1}
    assert apply_options({"sd_checkpoints_limit": 4}, settings, registry).model_cache_size == 4
    with pytest.raises(UserError, match="too large"):
        apply_options({f"k{i}": i for i in range(MAX_OPTION_KEYS + 1)}, settings, registry)
    with pytest.raises(UserError, match="whole number"):
        apply_options({"CLIP_stop_at_last_layers": "two"}, settings, registry)


def test_png_info_splits_the_size_as_a1111():
    text = "a cat\nNegative prompt: dog\nSteps: 20, Sampler: Euler, Size: 512x768, Seed: 1"
    parsed = png_info(text, {"Software": "x"})
    assert parsed["info"] == text and parsed["items"] == {"Software": "x"}
    assert parsed["parameters"]["Prompt"] == "a cat" and parsed["parameters"]["Negative prompt"] == "dog"
    assert (parsed["parameters"]["Size-1"], parsed["parameters"]["Size-2"]) == ("512", "768")
    assert png_info(None, {}) == {"info": "", "items": {}, "parameters": {}}


def test_login_check():
    logins = [("alice", "s3cret"), ("bob", "pa:ss")]

    def header(user: str, password: str) -> str:
        return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    assert login_ok(None, None)  # no login required
    assert login_ok(header("alice", "s3cret"), logins) and login_ok(header("bob", "pa:ss"), logins)
    for bad in (None, "", "Bearer x", "Basic %%%", header("alice", "nope"), header("carol", "s3cret"), "Basic " +
                base64.b64encode(b"alice").decode()):  # fmt: skip
        assert not login_ok(bad, logins), bad


def test_the_board_reports_the_oldest_running_job_and_bounds_the_queue():
    board = JobBoard(limit=2)
    first, second = JobControl(), JobControl()
    a = board.admit("api", first, steps=10, batch_count=1)
    b = board.admit("ui", second, steps=10, batch_count=2)
    with pytest.raises(UserError, match="queue is full"):
        board.admit("api", JobControl(), steps=1, batch_count=1)
    assert board.current() is None and board.waiting() == 2

    def events():
        yield Progress(3, 10, 0, 1, 0.5, 1.0)
        yield Progress(4, 10, 0, 1, 0.6, 1.0)

    running = board.track(a, events())
    next(running)
    assert board.current() is a and a.progress.step == 3 and board.waiting() == 1
    running.close()  # the consumer went away: the job leaves the board
    assert board.current() is None and board.in_flight() == 1
    list(board.track(b, iter([Progress(1, 10, 1, 2, 0.1, None)])))
    assert board.in_flight() == 0 and b.progress.batch_index == 1


def test_the_workers_line_is_first_come_first_served():
    pool = WorkerPool([], start=False)
    worker = SimpleNamespace(ready=True, busy=True, loaded=[], failed=None)
    pool.workers = [worker]
    order: list[int] = []

    def job(number: int) -> None:
        pool._acquire(None)
        order.append(number)
        time.sleep(0.05)
        pool._release(worker)

    threads = []
    for number in range(5):
        threads.append(threading.Thread(target=job, args=(number,)))
        threads[-1].start()
        time.sleep(0.1)  # each is in line before the next arrives
    pool._release(worker)  # the worker becomes free: the line moves in order
    for thread in threads:
        thread.join(timeout=30)
    assert order == [0, 1, 2, 3, 4]
