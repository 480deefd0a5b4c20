"""LoRAs from <lora:name:weight> tags: applied through diffusers to the loaded checkpoint, never reloading it."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

import core.model_cache
from core.errors import UserError
from core.events import Notice
from core.infotext import parse_infotext
from core.lora import LoraUse, lora_uses
from core.lora_files import family_of, list_loras, unsupported_format
from tests.conftest import make_engine, tiny_request
from tests.fixtures.tiny_loras import kohya_lora, loha_lora, peft_lora, write_lora
from tests.fixtures.tiny_models import write_checkpoint

SD1 = "tiny-sd1.safetensors"
SDXL = "tiny-sdxl.safetensors"


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("lora-models")
    write_checkpoint(root / "Stable-diffusion" / SD1, "SD1")
    write_checkpoint(root / "Stable-diffusion" / SDXL, "SDXL")
    loras = root / "Lora"
    write_lora(loras / "style.safetensors", kohya_lora("SD1", seed=0))
    write_lora(loras / "other.safetensors", kohya_lora("SD1", seed=1))
    write_lora(loras / "chars" / "te_only.safetensors", kohya_lora("SD1", seed=2, unet=False))
    write_lora(loras / "locon.safetensors", kohya_lora("SD1", seed=3, attention=False, conv=True, te=False))
    write_lora(loras / "pickled.pt", kohya_lora("SD1", seed=4), fmt="pt")
    write_lora(loras / "style-peft.safetensors", peft_lora("SD1", seed=0))
    write_lora(loras / "loha.safetensors", loha_lora("SD1"))
    write_lora(loras / "xl.safetensors", kohya_lora("SDXL", seed=5))
    (loras / "style.preview.png").write_bytes(b"not really a png")
    return root


class Lab:
    """An engine over the LoRA models folder, and the images it gave before any LoRA was ever loaded."""

    def __init__(self, models: Path, tmp: Path):
        self.engine = make_engine(models, tmp / "outputs", tmp / "cache")
        self.base = self.pixels("a photo of a cat")
        self.base_xl = self.pixels("a photo of a cat", checkpoint=SDXL)

    def run(self, prompt: str, **changes):
        notices: list[str] = []
        result = None
        request = tiny_request(prompt=prompt, checkpoint=changes.pop("checkpoint", SD1), steps=3, **changes)
        for event in self.engine.run(request):
            if isinstance(event, Notice):
                notices.append(event.message)
            elif hasattr(event, "images"):
                result = event
        return result.images[0], notices

    def pixels(self, prompt: str, **changes) -> np.ndarray:
        return np.asarray(self.run(prompt, **changes)[0].image, dtype=np.int16)


@pytest.fixture(scope="module")
def lab(models, tmp_path_factory) -> Lab:
    return Lab(models, tmp_path_factory.mktemp("lora-lab"))


def distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).mean())


def lora_hashes(infotext: str) -> str | None:
    return parse_infotext(infotext)[2].get("Lora hashes")


def addnet_hash(path: Path) -> str:
    data = path.read_bytes()
    header = int.from_bytes(data[:8], "little")
    return hashlib.sha256(data[8 + header :]).hexdigest()[:12]


def test_weight_zero_gives_the_plain_checkpoints_pixels(lab):
    assert np.array_equal(lab.pixels("a photo of a cat <lora:style:0>"), lab.base)


def test_effect_grows_with_the_weight(lab):
    distances = [distance(lab.pixels(f"a photo of a cat <lora:style:{w}>"), lab.base) for w in (0.5, 1, 2)]
    assert 0 < distances[0] < distances[1] < distances[2]


def test_a_job_without_loras_after_one_with_gives_the_exact_base_pixels(lab):
    assert not np.array_equal(lab.pixels("a photo of a cat <lora:style:1>"), lab.base)
    assert np.array_equal(lab.pixels("a photo of a cat"), lab.base)


def test_two_loras_at_once_differ_from_each_alone(lab):
    style = lab.pixels("a photo of a cat <lora:style:1>")
    other = lab.pixels("a photo of a cat <lora:other:1>")
    both = lab.pixels("a photo of a cat <lora:style:1> <lora:other:1>")
    for alone in (style, other, lab.base):
        assert distance(both, alone) > 0.5
    # Order does not matter, the result is reproducible, and loading a second LoRA left the first one as it was.
    assert np.array_equal(lab.pixels("a photo of a cat <lora:other:1><lora:style:1>"), both)
    assert np.array_equal(lab.pixels("a photo of a cat <lora:style:1>"), style)


def test_negative_weight_pushes_the_other_way(lab):
    plus = lab.pixels("a photo of a cat <lora:style:1>")
    minus = lab.pixels("a photo of a cat <lora:style:-1>")
    assert distance(minus, lab.base) > 0.5
    assert distance(minus, plus) > distance(minus, lab.base)


def test_tags_in_the_negative_prompt_apply_too(lab):
    in_negative = lab.pixels("a photo of a cat", negative_prompt="blurry <lora:style:1>")
    assert np.array_equal(in_negative, lab.pixels("a photo of a cat <lora:style:1>"))


def test_text_encoder_only_lora_changes_the_image(lab):
    te_only = lab.pixels("a photo of a cat <lora:te_only:1>")
    assert distance(te_only, lab.base) > 0.5
    # te and unet multipliers are separate: no UNet layers, so a text-encoder weight of 0 leaves the model as it was.
    assert np.array_equal(lab.pixels("a photo of a cat <lora:te_only:0:1>"), lab.base)
    unet_part = lab.pixels("a photo of a cat <lora:style:0:1>")
    te_part = lab.pixels("a photo of a cat <lora:style:te=1:unet=0>")
    whole = lab.pixels("a photo of a cat <lora:style:1>")
    assert len({arr.tobytes() for arr in (unet_part, te_part, whole, lab.base)}) == 4


def test_diffusers_peft_format_gives_the_same_pixels_as_kohya(lab):
    kohya = lab.pixels("a photo of a cat <lora:style:1>")
    assert np.array_equal(lab.pixels("a photo of a cat <lora:style-peft:1>"), kohya)


def test_locon_convolution_layers_apply(lab):
    assert distance(lab.pixels("a photo of a cat <lora:locon:1>"), lab.base) > 0.5


def test_loha_is_skipped_with_a_notice_naming_the_format(lab):
    image, notices = lab.run("a photo of a cat <lora:loha:1>")
    assert "LoRA 'loha' is in LyCORIS LoHa format, which this version cannot apply: skipped." in notices
    assert np.array_equal(np.asarray(image.image, dtype=np.int16), lab.base)
    assert lora_hashes(image.infotext) is None


def test_wrong_family_lora_is_skipped_with_a_notice(lab):
    image, notices = lab.run("a photo of a cat <lora:xl:1>")
    assert "LoRA 'xl' is for SDXL but the checkpoint is SD1.x: skipped." in notices
    assert np.array_equal(np.asarray(image.image, dtype=np.int16), lab.base)
    assert lora_hashes(image.infotext) is None
    image, notices = lab.run("a photo of a cat <lora:style:1>", checkpoint=SDXL)
    assert "LoRA 'style' is for SD1.x but the checkpoint is SDXL: skipped." in notices
    assert np.array_equal(np.asarray(image.image, dtype=np.int16), lab.base_xl)


def test_unknown_name_is_a_notice_and_the_job_runs(lab):
    image, notices = lab.run("a photo of a cat <lora:nonexistent:1>")
    assert any("LoRA 'nonexistent' was not found" in n for n in notices)
    assert np.array_equal(np.asarray(image.image, dtype=np.int16), lab.base)


def test_infotext_keeps_the_prompt_and_names_the_applied_loras_with_addnet_hashes(lab, models):
    prompt = "a photo of a cat <lora:style:0.8> <lora:pickled:1> <lora:missing:1>"
    image, _ = lab.run(prompt)
    text_prompt, _, params = parse_infotext(image.infotext)
    assert text_prompt == prompt
    style_hash = addnet_hash(models / "Lora" / "style.safetensors")
    pickled_hash = hashlib.sha256((models / "Lora" / "pickled.pt").read_bytes()).hexdigest()[:12]
    assert params["Lora hashes"] == f"style: {style_hash}, pickled: {pickled_hash}"
    assert f'Lora hashes: "style: {style_hash}, pickled: {pickled_hash}"' in image.infotext


def test_loras_by_relative_name_and_in_subfolders(lab):
    by_stem = lab.pixels("a photo of a cat <lora:te_only:1>")
    assert np.array_equal(lab.pixels("a photo of a cat <lora:chars/te_only:1>"), by_stem)
    # The same file named twice adds up its weights.
    assert np.array_equal(lab.pixels("a photo of a cat <lora:te_only:0.5> <lora:chars/te_only:0.5>"), by_stem)


def test_changing_loras_never_reloads_the_checkpoint(lab, monkeypatch):
    lab.pixels("a photo of a cat")  # the checkpoint is loaded (or still cached)
    loads = []
    original = core.model_cache.load_checkpoint
    monkeypatch.setattr(core.model_cache, "load_checkpoint", lambda *a, **k: loads.append(a) or original(*a, **k))
    for prompt in ("<lora:style:1>", "<lora:other:0.7>", "<lora:style:1><lora:locon:1>", "", "<lora:te_only:2>"):
        lab.pixels(f"a photo of a cat {prompt}")
    assert loads == []


def test_loaded_adapters_are_bounded(lab):
    loras = lab.engine.loras
    lab.pixels("a photo of a cat")
    pipe = lab.engine.models.activate(SD1).loaded.pipeline
    old_capacity, loras.capacity = loras.capacity, 2
    try:
        for name in ("style", "other", "locon", "te_only", "pickled"):
            lab.pixels(f"a photo of a cat <lora:{name}:1>")
            loaded = {n for names in pipe.get_list_adapters().values() for n in names}
            assert len(loaded) <= 2
        # Three at once is allowed (all are needed), and the result is what the three give.
        three = lab.pixels("a photo of a cat <lora:style:1><lora:other:1><lora:locon:1>")
        assert distance(three, lab.base) > 0.5
    finally:
        loras.capacity = old_capacity
    assert np.array_equal(lab.pixels("a photo of a cat"), lab.base)


def test_sdxl_lora_on_the_sdxl_checkpoint(lab):
    assert np.array_equal(lab.pixels("a photo of a cat <lora:xl:0>", checkpoint=SDXL), lab.base_xl)
    half = lab.pixels("a photo of a cat <lora:xl:0.5>", checkpoint=SDXL)
    full = lab.pixels("a photo of a cat <lora:xl:1>", checkpoint=SDXL)
    assert 0 < distance(half, lab.base_xl) < distance(full, lab.base_xl)
    te_only = lab.pixels("a photo of a cat <lora:xl:1:0>", checkpoint=SDXL)
    assert distance(te_only, lab.base_xl) > 0.5
    assert np.array_equal(lab.pixels("a photo of a cat", checkpoint=SDXL), lab.base_xl)


def test_img2img_uses_the_loras_too(lab):
    from PIL import Image

    start = Image.new("RGB", (64, 64), (120, 80, 200))
    plain = lab.pixels("a photo of a cat", init_image=start, denoising_strength=0.8)
    with_lora = lab.pixels("a photo of a cat <lora:style:1>", init_image=start, denoising_strength=0.8)
    assert distance(with_lora, plain) > 0.5


def test_lora_uses_reads_both_prompts_and_adds_repeats():
    uses = lora_uses("a <lora:a:0.5> <lora:b:1:0.25> <hypernet:h:1>", "<lora:a:0.25> <lyco:c:te=2>")
    assert uses == [LoraUse("a", 0.75, 0.75), LoraUse("b", 1.0, 0.25), LoraUse("c", 2.0, 2.0)]
    with pytest.raises(UserError):
        lora_uses("<lora:a:strong>", "")


def test_formats_and_families_from_keys_and_shapes():
    shapes = lambda state: {k: tuple(v.shape) for k, v in state.items()}  # noqa: E731
    assert unsupported_format(loha_lora("SD1")) == "LyCORIS LoHa"
    assert unsupported_format({"lora_unet_x.lokr_w1": 0, "lora_unet_x.lokr_w2": 0}) == "LyCORIS LoKr"
    assert unsupported_format({"model.diffusion_model.x.weight": 0}) == "an unknown"
    assert unsupported_format(kohya_lora("SD1")) is None
    assert family_of(shapes(kohya_lora("SD1"))) == "SD1.x"
    assert family_of(shapes(kohya_lora("SD1", unet=False))) is None  # a tiny text encoder's width tells nothing
    assert family_of(shapes(kohya_lora("SDXL", te=False))) == "SDXL"
    sd2_key = "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight"
    assert family_of({sd2_key: (4, 1024)}) == "SD2.x"


def test_browser_list_has_names_families_and_previews(lab):
    infos = {info.card.name: info for info in list_loras(lab.engine.models.registry)}
    assert infos["style"].family == "SD1.x"
    assert infos["xl"].family == "SDXL"
    assert infos["pickled"].family == ""
    assert infos["te_only"].card.relative_name == "chars/te_only.safetensors"
    assert infos["style"].card.preview is not None and infos["style"].card.preview.name == "style.preview.png"
    assert infos["other"].card.preview is None
