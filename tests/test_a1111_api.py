"""A1111's REST API through a running app.py, driven as its clients drive it: the webuiapi package, and raw requests
shaped as SillyTavern / Open WebUI / openOutpaint send them. Jobs share the UI's queue and workers and infotext."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import webuiapi
from gradio_client import Client
from PIL import Image, ImageDraw

from core.outputs import read_infotext
from tests.app_server import running_app
from tests.fixtures.tiny_loras import kohya_lora, write_lora
from tests.fixtures.tiny_models import write_checkpoint, write_controlnet
from tests.fixtures.tiny_upscalers import esrgan_state, write_upscaler
from tests.security.endpoints import bomb_png, named_endpoints

FAST = dict(steps=2, width=64, height=64, cfg_scale=7, seed=1234)


@pytest.fixture(scope="module")
def api_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("api-models")
    write_checkpoint(root / "Stable-diffusion" / "sd15" / "tiny-sd1.safetensors", "SD1")
    write_checkpoint(root / "Stable-diffusion" / "tiny-other.safetensors", "SD1", seed=3)
    write_controlnet(root / "ControlNet" / "tiny-sd1-canny.safetensors", "SD1")
    write_lora(root / "Lora" / "tiny-style.safetensors", kohya_lora("SD1"))
    write_upscaler(root / "ESRGAN" / "4x-tiny.pth", esrgan_state(4))
    (root / "VAE").mkdir()
    return root


@contextlib.contextmanager
def api_app(models, work, *args):
    """app.py, once its API routes are there (they are added just after the UI's server has opened its port)."""
    with running_app(models, work, *args) as running:
        deadline = time.time() + 60
        while httpx.get(running.url + "sdapi/v1/progress").status_code == 404 and time.time() < deadline:
            time.sleep(0.1)
        yield running


@pytest.fixture(scope="module")
def app(api_models, tmp_path_factory):
    work = tmp_path_factory.mktemp("api-app")
    work.joinpath("config.json").write_text(
        json.dumps({"cache_dir": str(work / "cache"), "default_checkpoint": "sd15/tiny-sd1.safetensors"})
    )
    work.joinpath("styles.csv").write_text("name,prompt,negative_prompt\nwarm,warm light,cold\n")
    with api_app(api_models, work) as running:
        yield running


@pytest.fixture
def api(app) -> webuiapi.WebUIApi:
    return webuiapi.WebUIApi(port=app.port, sampler="Euler", steps=2)


def b64_png(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def png_text(encoded: str) -> str | None:
    return Image.open(io.BytesIO(base64.b64decode(encoded))).info.get("parameters")


def test_webuiapi_txt2img_returns_pngs_with_infotext_equal_to_the_uis(app, api):
    result = api.txt2img(prompt="a red square", negative_prompt="blurry", sampler_name="Euler", **FAST)
    assert len(result.images) == 1 and result.images[0].size == (64, 64)
    infotext = result.images[0].info["parameters"]
    assert infotext.startswith("a red square\nNegative prompt: blurry\nSteps: 2, Sampler: Euler,")
    assert "Seed: 1234, Size: 64x64, Model hash: " in infotext and "Model: tiny-sd1" in infotext
    info = result.info
    assert info["infotexts"] == [infotext] and info["all_seeds"] == [1234] and info["seed"] == 1234
    assert info["prompt"] == "a red square" and info["sd_model_name"] == "tiny-sd1" and info["width"] == 64
    assert info["sampler_name"] == "Euler" and info["steps"] == 2 and len(info["job_timestamp"]) == 14
    assert result.parameters["prompt"] == "a red square"
    assert not list(app.outputs.rglob("*.png"))  # save_images defaults to False, as in A1111

    # The UI's Generate with the same values writes the same infotext.
    client = Client(app.url, verbose=False)
    ui_values = dict(prompt="a red square", negative_prompt="blurry", checkpoint="sd15/tiny-sd1.safetensors",
                     sampler_name="Euler", scheduler="Automatic", **FAST)  # fmt: skip
    *_, ui_infotext = client.predict(**ui_values, api_name="/txt2img")
    assert ui_infotext == infotext
    pixels = result.images[0].convert("RGB").tobytes()
    saved = next(app.outputs.rglob("*.png"))
    assert read_infotext(saved) == infotext and Image.open(saved).convert("RGB").tobytes() == pixels
    saved.unlink()


def test_save_images_keeps_the_file_in_the_outputs(app, api):
    result = api.txt2img(prompt="kept", save_images=True, **FAST)
    (saved,) = [p for p in app.outputs.rglob("*.png") if read_infotext(p).startswith("kept\n")]
    assert saved.parent.parent.name == "txt2img-images" and read_infotext(saved) == result.info["infotexts"][0]
    saved.unlink()


def test_img2img_and_inpainting_keep_the_unmasked_pixels(api):
    source = Image.new("RGB", (64, 64), (200, 40, 40))
    changed = api.img2img(images=[source], prompt="blue", denoising_strength=0.6, **FAST)
    assert changed.images[0].size == (64, 64) and "Denoising strength: 0.6" in changed.info["infotexts"][0]
    mask = Image.new("L", (64, 64), 0)
    ImageDraw.Draw(mask).rectangle((0, 0, 31, 63), fill=255)  # repaint the left half
    painted = api.img2img(images=[source], mask_image=mask, inpainting_fill=1, mask_blur=0, inpaint_full_res=False,
                          prompt="blue", denoising_strength=1.0, **FAST)  # fmt: skip
    out = painted.images[0].convert("RGB")
    assert "Masked content: original" in painted.info["infotexts"][0]
    assert out.getpixel((60, 32)) == (200, 40, 40)  # the unmasked half is the source, pixel for pixel
    assert out.getpixel((4, 32)) != (200, 40, 40)


def test_controlnet_through_webuiapi_and_its_routes(api):
    assert api.controlnet_version() == 3
    (model,) = api.controlnet_model_list()
    assert model.startswith("tiny-sd1-canny")
    assert "canny" in api.controlnet_module_list()
    edges = Image.new("RGB", (64, 64), 0)
    ImageDraw.Draw(edges).rectangle((16, 16, 48, 48), outline=(255, 255, 255), width=3)
    unit = webuiapi.ControlNetUnit(image=edges, module="canny", model=model, weight=1.0, resize_mode="Just Resize")
    # webuiapi adds the units to its default alwayson_scripts dict (a mutable default): pass a fresh one.
    result = api.txt2img(prompt="a box", controlnet_units=[unit], alwayson_scripts={}, **FAST)
    assert 'ControlNet 0: "Module: canny, Model: tiny-sd1-canny' in result.info["infotexts"][0]
    plain = api.txt2img(prompt="a box", **FAST)
    assert result.images[0].tobytes() != plain.images[0].tobytes()
    detected = api.controlnet_detect([edges], module="canny")
    assert detected.info == "Success" and len(detected.images) == 1 and detected.images[0].size == (64, 64)


def test_options_switch_the_checkpoint_and_a_post_of_the_whole_dict_works(app, api):
    titles = api.util_get_model_names()
    assert any(t.startswith("tiny-other") for t in titles)
    api.util_set_model("tiny-other")
    assert api.util_get_current_model().startswith("tiny-other")
    assert api.txt2img(prompt="x", **FAST).info["sd_model_name"] == "tiny-other"
    # Open WebUI: read the whole dict, change the model, POST it all back (with keys we do not know).
    options = httpx.get(app.url + "sdapi/v1/options").json()
    options.update(sd_model_checkpoint="sd15/tiny-sd1.safetensors", some_extension_option=[1, 2])
    options["CLIP_stop_at_last_layers"] = 2
    assert httpx.post(app.url + "sdapi/v1/options", json=options).status_code == 200
    again = httpx.get(app.url + "sdapi/v1/options").json()
    assert again["some_extension_option"] == [1, 2] and again["sd_model_checkpoint"].startswith("sd15/tiny-sd1")
    assert "Clip skip: 2" in api.txt2img(prompt="x", **FAST).info["infotexts"][0]
    httpx.post(app.url + "sdapi/v1/options", json={"CLIP_stop_at_last_layers": 1})
    refused = httpx.post(app.url + "sdapi/v1/options", json={"sd_model_checkpoint": "nope.safetensors"})
    assert refused.status_code == 422 and "tiny-other" in refused.json()["detail"]


def test_progress_while_a_job_runs_shows_a_preview_and_interrupt_stops_it(app, api):
    idle = api.get_progress()
    assert idle["progress"] == 0 and idle["state"]["job_count"] == 0
    settled = httpx.post(app.url + "sdapi/v1/options", json={"show_progress_every_n_steps": 1})
    assert settled.status_code == 200
    done: dict = {}
    job = threading.Thread(target=lambda: done.update(r=api.txt2img(prompt="slow", steps=150, width=128, height=128)))
    job.start()
    preview = None
    deadline = time.time() + 120
    while preview is None and time.time() < deadline:
        progress = api.get_progress()
        if progress["current_image"]:
            preview = progress
        time.sleep(0.2)
    assert preview is not None, "no preview arrived"
    assert 0 < preview["progress"] < 1 and preview["state"]["sampling_steps"] == 150
    Image.open(io.BytesIO(base64.b64decode(preview["current_image"]))).load()
    api.interrupt()
    job.join(timeout=120)
    assert done["r"].info["interrupted"] and len(done["r"].images) == 1
    assert api.get_progress()["state"]["job_count"] == 0


def test_styles_are_listed_and_applied(api):
    assert {"name": "warm", "prompt": "warm light", "negative_prompt": "cold"} in api.get_prompt_styles()
    result = api.txt2img(prompt="a cup", negative_prompt="", styles=["warm"], **FAST)
    assert result.info["infotexts"][0].startswith("a cup, warm light\nNegative prompt: cold\n")
    assert result.info["styles"] == ["warm"] and result.info["prompt"] == "a cup, warm light"


def test_hires_fix_through_webuiapi(api):
    result = api.txt2img(prompt="big", enable_hr=True, hr_scale=1.5, hr_upscaler=webuiapi.HiResUpscaler.Lanczos,
                         hr_second_pass_steps=2, denoising_strength=0.6, **FAST)  # fmt: skip
    assert result.images[0].size == (96, 96)
    assert result.info["infotexts"][0].endswith(
        "Denoising strength: 0.6, Hires upscale: 1.5, Hires steps: 2, Hires upscaler: Lanczos"
    )
    assert [m["name"] for m in api.get_latent_upscale_modes()][:2] == ["Latent", "Latent (antialiased)"]
    assert [u["name"] for u in api.get_upscalers()][:3] == ["None", "Lanczos", "Nearest"]


def test_extras_single_and_batch(app, api):
    source = api.txt2img(prompt="to upscale", **FAST)
    result = api.extra_single_image(image=source.images[0], upscaler_1="4x-tiny", upscaling_resize=2)
    assert result.image.size == (128, 128)
    assert result.image.info["parameters"] == source.info["infotexts"][0]  # the source's own, kept
    assert result.image.info["postprocessing"] == "Postprocess upscale by: 2, Postprocess upscaler: 4x-tiny"
    assert "Postprocess upscaler: 4x-tiny" in result.info
    batch = httpx.post(app.url + "sdapi/v1/extra-batch-images", timeout=120, json={
        "imageList": [{"data": b64_png(Image.new("RGB", (32, 16))), "name": "a"},
                      {"data": b64_png(Image.new("RGB", (16, 16))), "name": "b"}],
        "resize_mode": 1, "upscaling_resize_w": 48, "upscaling_resize_h": 48, "upscaler_1": "Lanczos"})  # fmt: skip
    sizes = [Image.open(io.BytesIO(base64.b64decode(i))).size for i in batch.json()["images"]]
    assert batch.status_code == 200 and sizes == [(48, 48), (48, 48)]
    assert not list(app.outputs.rglob("extras-images/*/*.png"))  # the API does not save, as A1111's
    bad = httpx.post(app.url + "sdapi/v1/extra-single-image", json={"image": "%%", "upscaler_1": "None"})
    assert bad.status_code == 422 and "image" in bad.text
    faces = httpx.post(app.url + "sdapi/v1/extra-single-image", json={"image": b64_png(Image.new("RGB", (8, 8))),
                                                                      "gfpgan_visibility": 1})  # fmt: skip
    assert faces.status_code == 422 and "Face restoration" in faces.text
    assert "4x-tiny" in [u["name"] for u in api.get_upscalers()]


def test_png_info_reads_back_a_returned_image(api):
    result = api.txt2img(prompt="read me", **FAST)
    info = api.png_info(result.images[0])
    assert info.info == result.info["infotexts"][0]
    params = info.parameters
    assert params["Prompt"] == "read me" and params["Steps"] == "2" and params["Size-1"] == "64"


def test_lists_are_a1111_shaped(app, api):
    assert "Euler a" in api.util_get_sampler_names() and "DPM++ 2M" in api.util_get_sampler_names()
    assert "karras" in api.util_get_scheduler_names()
    (lora,) = api.get_loras()
    assert lora["name"] == "tiny-style" and lora["alias"] == "tiny-style"
    models = api.get_sd_models()
    assert {"title", "model_name", "hash", "sha256", "filename", "config"} <= set(models[0])
    assert api.get_scripts() == {"txt2img": ["controlnet"], "img2img": ["controlnet"]}
    flags = api.get_cmd_flags()
    assert flags["device"] == "cpu" and "api_auth" in flags
    memory = api.get_memory()
    assert memory["ram"]["total"] > 0 and memory["workers"][0]["device"] == "cpu"
    for route in ("sd-vae", "upscalers", "latent-upscale-modes", "prompt-styles", "embeddings", "schedulers"):
        assert httpx.get(f"{app.url}sdapi/v1/{route}").status_code == 200, route
    for route in ("refresh-checkpoints", "refresh-loras", "refresh-vae", "refresh-embeddings"):
        assert httpx.post(f"{app.url}sdapi/v1/{route}").status_code == 200, route
    docs = httpx.get(app.url + "docs")
    assert docs.status_code == 200 and "/docs-assets/swagger-ui-bundle.js" in docs.text  # no CDN
    assert httpx.get(app.url + "docs-assets/swagger-ui-bundle.js").status_code == 200
    schema = httpx.get(app.url + "openapi.json").json()
    assert "/sdapi/v1/txt2img" in schema["paths"] and not any(p.startswith("/gradio_api") for p in schema["paths"])


def test_raw_clients_sampler_index_with_a_combined_name_and_polling(app):
    """Older scripts send sampler_index "DPM++ 2M Karras" (pre-1.9 names); SillyTavern pings, sends its whole
    hires-off body with override_settings, and polls progress until idle."""
    assert httpx.get(app.url + "internal/ping").json() == {}
    body = {"prompt": "combined", "negative_prompt": "", "sampler_index": "DPM++ 2M Karras", "steps": 2, "width": 64,
            "height": 64, "seed": 7, "cfg_scale": 7, "restore_faces": False, "enable_hr": False, "hr_scale": 2,
            "hr_upscaler": "Latent", "denoising_strength": 0.7, "hr_second_pass_steps": 0, "clip_skip": 1,
            "override_settings": {"sd_model_checkpoint": "tiny-sd1", "CLIP_stop_at_last_layers": 1},
            "override_settings_restore_afterwards": True, "send_images": True, "save_images": False}  # fmt: skip
    with ThreadPoolExecutor(1) as pool:
        answer = pool.submit(httpx.post, app.url + "sdapi/v1/txt2img", json=body, timeout=120)
        while not answer.done():
            progress = httpx.get(app.url + "sdapi/v1/progress?skip_current_image=true").json()
            assert progress["current_image"] is None and 0 <= progress["progress"] <= 1
            time.sleep(0.1)
    response = answer.result()
    assert response.status_code == 200
    idle = httpx.get(app.url + "sdapi/v1/progress").json()
    assert idle["progress"] == 0 and idle["state"]["job_count"] == 0
    infotext = png_text(response.json()["images"][0])
    assert "Sampler: DPM++ 2M, Schedule type: Karras," in infotext and "Seed: 7," in infotext
    assert json.loads(response.json()["info"])["scheduler"] == "Karras"


def test_bad_input_is_a_422_naming_the_field_and_the_server_keeps_running(app, tmp_path):
    post = lambda body: httpx.post(app.url + "sdapi/v1/txt2img", json=body, timeout=60)  # noqa: E731
    unknown = post({"prompt": "x", "sampler_name": "Nope", **FAST})
    assert unknown.status_code == 422 and "Unknown sampler 'Nope'" in unknown.text and "Euler a" in unknown.text
    typed = post({"steps": "many"})
    assert typed.status_code == 422 and "steps" in typed.text
    bad_b64 = httpx.post(app.url + "sdapi/v1/img2img", json={"init_images": ["%%%"], **FAST}, timeout=60)
    assert bad_b64.status_code == 422 and "init_images[0]" in bad_b64.text
    bomb = base64.b64encode(bomb_png(tmp_path / "bomb.png").read_bytes()).decode()
    refused = httpx.post(app.url + "sdapi/v1/img2img", json={"init_images": [bomb], **FAST}, timeout=60)
    assert refused.status_code == 422 and "too large" in refused.text and "init_images[0]" in refused.text
    huge = post({"width": 100000, "height": 64, "steps": 1})
    assert huge.status_code == 422 and "Width 100000" in huge.text
    malformed = httpx.post(app.url + "sdapi/v1/txt2img", content=b"{not json", timeout=60,
                           headers={"content-type": "application/json"})  # fmt: skip
    assert malformed.status_code == 422
    hires = post({"enable_hr": True, "hr_upscaler": "4x-Nope", **FAST})
    assert hires.status_code == 422 and "Unknown hires upscaler '4x-Nope'" in hires.text
    script = post({"alwayson_scripts": {"ADetailer": {"args": [True]}}, **FAST})
    assert script.status_code == 422 and "ADetailer" in script.text
    with socket.create_connection(("127.0.0.1", app.port), timeout=60) as raw:  # a body that claims 1 TB
        raw.sendall(b"POST /sdapi/v1/png-info HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                    b"Content-Length: 1099511627776\r\n\r\n" + b"x" * 65536)  # fmt: skip
        assert raw.recv(100).startswith(b"HTTP/1.1 413")
    assert post({"prompt": "still here", **FAST}).status_code == 200


def test_six_clients_with_three_jobs_each_get_their_own_images(app):
    def client(index: int) -> list[tuple[str, int, str]]:
        got = []
        for job in range(3):
            prompt, seed = f"client {index} job {job}", 1000 * index + job
            answer = httpx.post(app.url + "sdapi/v1/txt2img", timeout=300,
                                json={"prompt": prompt, **FAST, "seed": seed, "steps": 1})  # fmt: skip
            assert answer.status_code == 200, answer.text
            (image,) = answer.json()["images"]
            got.append((prompt, seed, png_text(image)))
        return got

    with ThreadPoolExecutor(6) as pool:
        results = [item for batch in pool.map(client, range(6)) for item in batch]
    assert len(results) == 18
    for prompt, seed, infotext in results:
        assert infotext.startswith(prompt + "\n") and f"Seed: {seed}," in infotext


def test_api_auth_requires_a_login_on_every_route(api_models, tmp_path):
    work = tmp_path / "auth"
    with api_app(api_models, work, "--api-auth", "alice:s3cret") as app:
        for method, route in (("get", "sdapi/v1/loras"), ("get", "sdapi/v1/sd-models"), ("post", "sdapi/v1/txt2img"),
                              ("get", "sdapi/v1/progress"), ("get", "sdapi/v1/options"), ("get", "docs"),
                              ("get", "openapi.json"), ("get", "controlnet/model_list")):  # fmt: skip
            answer = httpx.request(method, app.url + route, json={} if method == "post" else None)
            assert answer.status_code == 401, route
            assert answer.headers["www-authenticate"].startswith("Basic")
            wrong = httpx.request(method, app.url + route, auth=("alice", "nope"))
            assert wrong.status_code == 401, route
        assert httpx.get(app.url + "sdapi/v1/loras", auth=("alice", "s3cret")).status_code == 200
        logged_in = webuiapi.WebUIApi(port=app.port, username="alice", password="s3cret", sampler="Euler", steps=1)
        assert len(logged_in.txt2img(prompt="x", width=64, height=64).images) == 1
        flags = httpx.get(app.url + "sdapi/v1/cmd-flags", auth=("alice", "s3cret")).json()
        assert flags["api_auth"] == "(set)"  # the password is never shown


def test_nowebui_serves_the_api_alone(api_models, tmp_path):
    with api_app(api_models, tmp_path / "nowebui", "--nowebui") as app:
        assert httpx.get(app.url + "sdapi/v1/samplers").status_code == 200
        assert httpx.get(app.url + "config").status_code == 404  # no Gradio
        answer = httpx.post(app.url + "sdapi/v1/txt2img", json={"prompt": "alone", **FAST}, timeout=120)
        assert answer.status_code == 200 and png_text(answer.json()["images"][0]).startswith("alone\n")


def test_on_a_network_address_the_api_needs_api_and_then_the_uis_login(api_models, tmp_path):
    with running_app(api_models, tmp_path / "listen", "--listen") as app:
        assert httpx.get(app.url + "sdapi/v1/samplers").status_code == 404  # off unless --api
    with api_app(api_models, tmp_path / "listen", "--listen", "--api") as app:
        assert httpx.get(app.url + "sdapi/v1/samplers").status_code == 401
        user, password = (tmp_path / "listen" / "cache" / "login.txt").read_text().strip().split(":", 1)
        assert httpx.get(app.url + "sdapi/v1/samplers", auth=(user, password)).status_code == 200


def test_the_gradio_endpoints_take_named_parameters_and_only_generation_is_listed(app):
    endpoints = named_endpoints(Client(app.url, verbose=False))
    assert set(endpoints) == {"/txt2img", "/img2img", "/inpaint", "/outpaint", "/controlnet"}
    txt2img = endpoints["/txt2img"]
    names = [param["parameter_name"] for param in txt2img]
    assert names[:4] == ["prompt", "negative_prompt", "checkpoint", "vae"]
    assert {"steps", "seed", "cfg_scale", "styles", "controlnet_0_image"} <= set(names)
    assert all(param["parameter_has_default"] for param in txt2img)
