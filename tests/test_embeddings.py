"""Textual-inversion embeddings: A1111's file formats, use in prompts, size checks, TI hashes, safe pickles."""

from __future__ import annotations

import hashlib
import os

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from core.embeddings import read_embedding
from core.errors import UserError
from core.events import Notice, Result
from core.families import SD1, SDXL
from core.prompt_encoding import PromptEncoder
from core.tokenizers import clip_tokenizer
from tests.conftest import make_engine, tiny_request
from tests.fixtures.tiny_models import SDXL_TEXT_HIDDEN_2, TEXT_HIDDEN, write_checkpoint

SD1_CKPT, SDXL_CKPT = "tiny-sd1.safetensors", "tiny-sdxl.safetensors"


class _RunsCode:
    """Pickles into a call of os.system, as a malicious .pt would."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _vectors(count: int, width: int, seed: int) -> torch.Tensor:
    return torch.randn(count, width, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("ti-models")
    write_checkpoint(root / "Stable-diffusion" / SD1_CKPT, "SD1")
    write_checkpoint(root / "Stable-diffusion" / SDXL_CKPT, "SDXL")
    emb = root / "embeddings"
    (emb / "sub").mkdir(parents=True)
    a1111 = {"string_to_token": {"*": 265}, "string_to_param": {"*": _vectors(2, TEXT_HIDDEN, 1)}, "name": "x"}
    torch.save(a1111, emb / "ptstyle.pt")
    torch.save({"string_to_param": {"*": _vectors(4, TEXT_HIDDEN, 2)}}, emb / "sub" / "fourvec.pt")
    save_file({"emb_params": _vectors(1, TEXT_HIDDEN, 3)}, emb / "safestyle.safetensors")
    torch.save({"<toy>": _vectors(1, TEXT_HIDDEN, 4)[0]}, emb / "toybin.bin")  # diffusers' learned_embeds.bin
    torch.save(_vectors(3, TEXT_HIDDEN, 5), emb / "plaintensor.pt")
    pair = {"clip_l": _vectors(2, TEXT_HIDDEN, 6), "clip_g": _vectors(2, SDXL_TEXT_HIDDEN_2, 7)}
    save_file(pair, emb / "xlpair.safetensors")
    save_file({"emb_params": _vectors(1, 2 * TEXT_HIDDEN, 8)}, emb / "widestyle.safetensors")
    torch.save({"string_to_param": {"*": _RunsCode(str(root / "pwned"))}}, emb / "evilstyle.pt")
    return root


@pytest.fixture(scope="module")
def engine(models, tmp_path_factory):
    return make_engine(models, tmp_path_factory.mktemp("outputs"), tmp_path_factory.mktemp("cache"))


def pixels(result) -> np.ndarray:
    return np.asarray(result.images[0].image.convert("RGB"), dtype=np.int16)


def test_reads_a1111_formats(models):
    emb = models / "embeddings"
    assert torch.equal(read_embedding(emb / "ptstyle.pt").vectors[""], _vectors(2, TEXT_HIDDEN, 1))
    assert read_embedding(emb / "sub" / "fourvec.pt").count == 4
    assert torch.equal(read_embedding(emb / "safestyle.safetensors").vectors[""], _vectors(1, TEXT_HIDDEN, 3))
    assert read_embedding(emb / "toybin.bin").vectors[""].shape == (1, TEXT_HIDDEN)
    assert read_embedding(emb / "plaintensor.pt").count == 3
    pair = read_embedding(emb / "xlpair.safetensors")
    assert pair.name == "xlpair" and pair.widths == {"clip_l": TEXT_HIDDEN, "clip_g": SDXL_TEXT_HIDDEN_2}


def test_a_pickle_that_runs_code_is_refused_and_never_run(models):
    with pytest.raises(UserError, match="evilstyle.pt was refused: it is a pickle that would run code"):
        read_embedding(models / "embeddings" / "evilstyle.pt")
    assert not (models / "pwned").exists()


def test_names_and_fit_per_checkpoint(engine):
    library = engine.embeddings
    assert {"ptstyle", "fourvec", "safestyle", "toybin", "plaintensor", "xlpair"} <= set(library.names())
    sd1 = library.for_checkpoint(engine.models.activate(SD1_CKPT).loaded)
    assert set(sd1.usable) == {"ptstyle", "fourvec", "safestyle", "toybin", "plaintensor"}
    assert set(sd1.skipped) == {"xlpair", "widestyle", "evilstyle"}
    assert "widestyle" in sd1.skipped["widestyle"] and "another model type" in sd1.skipped["widestyle"]
    assert "refused" in sd1.skipped["evilstyle"]
    assert library.for_checkpoint(engine.models.activate(SD1_CKPT).loaded) is sd1  # cached while files stay
    sdxl = library.for_checkpoint(engine.models.activate(SDXL_CKPT).loaded)
    assert set(sdxl.usable) == {"xlpair"}


def _encoder(engine, checkpoint, family, with_embeddings=True):
    loaded = engine.models.activate(checkpoint).loaded
    embeddings = engine.embeddings.for_checkpoint(loaded) if with_embeddings else None
    return PromptEncoder(loaded.pipeline, family, embeddings=embeddings), loaded


def test_embedding_vectors_take_the_place_of_its_name(engine, models):
    encoder, loaded = _encoder(engine, SD1_CKPT, SD1)
    (chunk,) = encoder.chunk("a photo of fourvec").chunks
    assert chunk.tokens[1:8] == [320, 1125, 539, 0, 0, 0, 0] and chunk.fixes == [(3, "fourvec")]
    # An embedding whose one vector is the token embedding of "cat" encodes exactly as the word "cat".
    cat = loaded.pipeline.text_encoder.get_input_embeddings().weight[2368].detach().clone()
    path = models / "embeddings" / "catlike.safetensors"
    save_file({"emb_params": cat[None]}, path)
    try:
        encoder, _ = _encoder(engine, SD1_CKPT, SD1)  # the library sees the new file
        assert torch.equal(encoder.encode("a photo of catlike").embeds, encoder.encode("a photo of cat").embeds)
        save_file({"emb_params": _vectors(1, TEXT_HIDDEN, 9)}, path)
        os.utime(path, ns=(1, 1))  # a changed file is read again, whatever the clock's resolution
        encoder, _ = _encoder(engine, SD1_CKPT, SD1)
        assert not torch.allclose(encoder.encode("a photo of catlike").embeds, encoder.encode("a photo of cat").embeds)
    finally:
        path.unlink()
    assert not loaded.pipeline.text_encoder.get_input_embeddings()._forward_hooks  # the hook is gone after use


@pytest.mark.parametrize("name", ["ptstyle", "safestyle", "toybin", "plaintensor", "fourvec"])
def test_prompt_with_an_sd1_embedding_differs_from_the_words(engine, name):
    encoder, _ = _encoder(engine, SD1_CKPT, SD1)
    without, _ = _encoder(engine, SD1_CKPT, SD1, with_embeddings=False)
    used = encoder.encode(f"a photo of {name}").embeds
    assert not torch.allclose(used, without.encode(f"a photo of {name}").embeds)
    assert list(encoder.embeddings_used) == [name]


def test_sdxl_pair_goes_to_both_encoders(engine):
    encoder, loaded = _encoder(engine, SDXL_CKPT, SDXL)
    without, _ = _encoder(engine, SDXL_CKPT, SDXL, with_embeddings=False)
    used, plain = encoder.encode("a photo of xlpair"), without.encode("a photo of xlpair")
    assert not torch.allclose(used.embeds[..., :TEXT_HIDDEN], plain.embeds[..., :TEXT_HIDDEN])
    assert not torch.allclose(used.embeds[..., TEXT_HIDDEN:], plain.embeds[..., TEXT_HIDDEN:])
    assert not torch.allclose(used.pooled, plain.pooled)


def test_generation_with_embeddings_writes_ti_hashes_and_is_deterministic(engine, models):
    request = tiny_request(checkpoint=SD1_CKPT, prompt="a photo of ptstyle", negative_prompt="safestyle, blurry")
    first, second = engine.generate(request), engine.generate(request)
    assert np.array_equal(pixels(first), pixels(second))
    plain = engine.generate(request.with_changes(prompt="a photo of cat", negative_prompt="blurry"))
    assert not np.array_equal(pixels(first), pixels(plain))

    def short(path):
        return hashlib.sha256(path.read_bytes()).hexdigest()[:12]

    emb = models / "embeddings"
    expected = f'TI hashes: "ptstyle: {short(emb / "ptstyle.pt")}, safestyle: {short(emb / "safestyle.safetensors")}"'
    assert expected in first.images[0].infotext
    assert "TI hashes" not in plain.images[0].infotext


def test_embedding_that_does_not_fit_is_skipped_with_a_notice(engine):
    events = list(engine.run(tiny_request(checkpoint=SD1_CKPT, prompt="widestyle, xlpair, evilstyle, a cat")))
    notices = [e.message for e in events if isinstance(e, Notice)]
    assert any("'widestyle' was skipped" in n for n in notices)
    assert any("'xlpair' was skipped" in n and "SDXL" in n for n in notices)
    assert any("evilstyle.pt was refused" in n for n in notices)
    result = events[-1]
    assert isinstance(result, Result) and len(result.images) == 1 and "TI hashes" not in result.images[0].infotext
    # An SD1 embedding named on SDXL: skipped the same way.
    events = list(engine.run(tiny_request(checkpoint=SDXL_CKPT, prompt="ptstyle")))
    assert any("'ptstyle' was skipped" in e.message for e in events if isinstance(e, Notice))


def test_tokenizers_are_never_changed(engine):
    engine.generate(tiny_request(checkpoint=SD1_CKPT, prompt="fourvec ptstyle"))
    for checkpoint in (SD1_CKPT, SDXL_CKPT):
        pipe = engine.models.activate(checkpoint).loaded.pipeline
        assert len(pipe.tokenizer) == 49408
        assert (
            pipe.tokenizer("ptstyle", add_special_tokens=False)["input_ids"]
            == clip_tokenizer()("ptstyle", add_special_tokens=False)["input_ids"]
        )
    assert len(clip_tokenizer()) == len(clip_tokenizer("!")) == 49408
