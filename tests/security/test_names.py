"""Every name a request carries is only ever matched against what the owner put in models/ (and styles.csv): a
name that climbs out (`../../x`), an absolute path, or a symlink to a file that is not a model reaches nothing
and gets a message that does not leak the file.

Symlinks the owner made inside models/ are followed, as A1111 users expect (a shared models drive linked in):
the listing is the owner's choice; a request can only pick from it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from core.errors import UserError
from core.events import Notice, Result
from core.infotext import parse_infotext
from core.request import ControlNetUnit
from core.styles import StyleLibrary
from tests.conftest import make_engine, tiny_request
from tests.fixtures.tiny_loras import kohya_lora, write_lora
from tests.fixtures.tiny_models import TEXT_HIDDEN, write_checkpoint, write_controlnet

SECRET = "TOP-SECRET-CONTENTS"
CKPT = "tiny-sd1.safetensors"


@pytest.fixture(scope="module")
def disk(tmp_path_factory):
    """models/ with one model of each kind, and beside it (outside models/) real model files and a secret."""
    root = tmp_path_factory.mktemp("names")
    models, outside = root / "models", root / "outside"
    write_checkpoint(models / "Stable-diffusion" / CKPT, "SD1")
    write_controlnet(models / "ControlNet" / "canny.safetensors", "SD1")
    write_lora(models / "Lora" / "style.safetensors", kohya_lora("SD1", seed=0))
    (models / "VAE").mkdir(parents=True)
    (models / "embeddings").mkdir(parents=True)

    write_checkpoint(outside / "other.safetensors", "SD1", seed=5)
    write_controlnet(outside / "cn.safetensors", "SD1", seed=3)
    write_lora(outside / "lora.safetensors", kohya_lora("SD1", seed=1))
    save_file({"emb_params": torch.randn(1, TEXT_HIDDEN)}, outside / "emb.safetensors")
    (outside / "secret.safetensors").write_text(SECRET)
    (outside / "styles.csv").write_text(f'name,prompt,negative_prompt\nleak,"{SECRET}",\n')

    # The owner's symlinks: a file link to something that is not a model, in every kind's folder.
    for folder in ("Stable-diffusion", "Lora", "ControlNet", "VAE", "embeddings"):
        (models / folder / "linked.safetensors").symlink_to(outside / "secret.safetensors")
    (models / "styles.csv").write_text('name,prompt,negative_prompt\nmine,"in the style of mine",\n')
    return root


@pytest.fixture(scope="module")
def engine(disk):
    engine = make_engine(disk / "models", disk / "outputs", disk / "cache")
    engine.styles = StyleLibrary(disk / "models" / "styles.csv")
    return engine


def hostile_names(disk, stem: str, folder: str) -> list[str]:
    """Ways to name a file outside models/<folder>: climbing out, absolute, and climbing out of a real folder."""
    target = disk / "outside" / f"{stem}.safetensors"
    return [
        f"../../outside/{stem}.safetensors",
        f"../../outside/{stem}",
        str(target),
        str(target.with_suffix("")),
        f"{disk / 'models' / folder}/../../outside/{stem}.safetensors",
        f"./../../outside/{stem}.safetensors",
        "/etc/passwd",
    ]


def run(engine, **changes) -> tuple[Result, list[str]]:
    notices, result = [], None
    for event in engine.run(tiny_request(checkpoint=CKPT, steps=2, **changes)):
        if isinstance(event, Notice):
            notices.append(event.message)
        elif isinstance(event, Result):
            result = event
    return result, notices


def pixels(result: Result) -> np.ndarray:
    return np.asarray(result.images[0].image, dtype=np.int16)


@pytest.fixture(scope="module")
def plain(engine) -> np.ndarray:
    return pixels(run(engine, prompt="a cat")[0])


def test_checkpoint_names_outside_models_are_refused(engine, disk):
    for name in hostile_names(disk, "other", "Stable-diffusion"):
        with pytest.raises(UserError, match="No checkpoint named"):
            engine.generate(tiny_request(checkpoint=name, steps=1))


def test_vae_names_outside_models_are_refused(engine, disk):
    for name in hostile_names(disk, "other", "VAE"):
        with pytest.raises(UserError, match="No vae named"):
            engine.generate(tiny_request(checkpoint=CKPT, vae=name, steps=1))


def test_controlnet_model_names_outside_models_are_refused(engine, disk):
    for name in hostile_names(disk, "cn", "ControlNet"):
        unit = ControlNetUnit(image=Image.new("RGB", (64, 64)), model=name)
        with pytest.raises(UserError, match="No controlnet named"):
            engine.generate(tiny_request(checkpoint=CKPT, steps=1, controlnet_units=(unit,)))


def test_preprocessor_names_are_only_the_known_ones(engine):
    for module in ("../../outside/x", "/etc/passwd", "canny/../../x"):
        unit = ControlNetUnit(image=Image.new("RGB", (64, 64)), module=module, model="canny.safetensors")
        with pytest.raises(UserError, match="preprocessor"):
            engine.generate(tiny_request(checkpoint=CKPT, steps=1, controlnet_units=(unit,)))


def test_lora_tags_outside_models_apply_nothing(engine, disk, plain):
    for name in hostile_names(disk, "lora", "Lora"):
        result, notices = run(engine, prompt=f"a cat <lora:{name}:1>")
        assert any("was not found" in n for n in notices), (name, notices)
        assert np.array_equal(pixels(result), plain), name
        assert "Lora hashes" not in parse_infotext(result.images[0].infotext)[2]


def test_embedding_names_outside_models_are_only_words(engine, disk):
    assert engine.embeddings.names() == ["linked"]  # only what is in models/embeddings (the owner's link)
    for name in hostile_names(disk, "emb", "embeddings"):
        result, _ = run(engine, prompt=f"a cat {name}")
        assert "TI hashes" not in parse_infotext(result.images[0].infotext)[2], name
    result, notices = run(engine, prompt="a cat linked")  # the link to a file that is not an embedding
    assert "TI hashes" not in parse_infotext(result.images[0].infotext)[2]
    assert not any(SECRET in n for n in notices)


def test_style_names_are_only_the_owners_styles(engine, disk):
    for name in ("../outside/styles.csv", str(disk / "outside" / "styles.csv"), "leak", "/etc/passwd"):
        with pytest.raises(UserError, match="style") as refused:
            engine.generate(tiny_request(checkpoint=CKPT, steps=1, styles=(name,)))
        assert SECRET not in str(refused.value)
    result, _ = run(engine, prompt="a cat", styles=("mine",))
    assert "in the style of mine" in result.images[0].infotext


def test_a_symlink_to_a_file_that_is_not_a_model_gives_a_message_without_its_contents(engine, plain):
    with pytest.raises(UserError) as refused:
        engine.generate(tiny_request(checkpoint="linked.safetensors", steps=1))
    assert "linked.safetensors" in str(refused.value) and SECRET not in str(refused.value)

    with pytest.raises(UserError) as refused:
        engine.generate(tiny_request(checkpoint=CKPT, vae="linked.safetensors", steps=1))
    assert SECRET not in str(refused.value)

    unit = ControlNetUnit(image=Image.new("RGB", (64, 64)), model="linked.safetensors")
    with pytest.raises(UserError) as refused:
        engine.generate(tiny_request(checkpoint=CKPT, steps=1, controlnet_units=(unit,)))
    assert SECRET not in str(refused.value)

    result, notices = run(engine, prompt="a cat <lora:linked:1>")
    assert notices and not any(SECRET in n for n in notices)
    assert np.array_equal(pixels(result), plain)

    # The server still works after each refusal.
    assert np.array_equal(pixels(run(engine, prompt="a cat")[0]), plain)
