"""A1111-style prompt encoding: chunks, BREAK, comma backtrack, weights, clip skip, SDXL, schedules, token counts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.conditioning import encode_job_prompts
from core.families import SD1, SD2, SDXL
from core.prompt_chunks import EMBEDDING_PLACEHOLDER, EmbeddingIndex, chunk_pieces, chunk_prompt, count_tokens
from core.prompt_encoding import PromptEncoder
from core.tokenizers import clip_tokenizer
from tests.conftest import make_engine, tiny_request
from tests.fixtures.tiny_models import make_pipeline, write_checkpoint

CAT, DOG, COMMA = 2368, 1929, 267  # "cat</w>", "dog</w>", ",</w>"
BOS, EOS = 49406, 49407


@pytest.fixture(scope="module")
def sd1():
    return make_pipeline("SD1")


@pytest.fixture(scope="module")
def sdxl():
    return make_pipeline("SDXL")


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    root = tmp_path_factory.mktemp("prompt-models")
    write_checkpoint(root / "Stable-diffusion" / "tiny-sd1.safetensors", "SD1")
    write_checkpoint(root / "Stable-diffusion" / "tiny-sdxl.safetensors", "SDXL")
    return make_engine(root, tmp_path_factory.mktemp("outputs"), tmp_path_factory.mktemp("cache"))


def pixels(result) -> np.ndarray:
    return np.asarray(result.images[0].image.convert("RGB"), dtype=np.int16)


# --- chunking and counting (tokenizer only) -------------------------------------------------------------------------


def test_150_tokens_make_two_full_chunks():
    chunked = chunk_prompt("cat " * 150, clip_tokenizer())
    assert [len(c.tokens) for c in chunked.chunks] == [77, 77]
    for chunk in chunked.chunks:
        assert chunk.tokens == [BOS, *[CAT] * 75, EOS]
    assert chunked.token_count == 150
    assert count_tokens("cat " * 150, clip_tokenizer()) == (150, 150)


def test_break_closes_the_chunk_where_written():
    first, second = chunk_prompt("a cat BREAK a dog", clip_tokenizer()).chunks
    assert first.tokens[:4] == [BOS, 320, CAT, EOS] and set(first.tokens[3:]) == {EOS}
    assert second.tokens[:4] == [BOS, 320, DOG, EOS]
    assert count_tokens("a cat BREAK a dog", clip_tokenizer()) == (77, 150)  # A1111 counts the closed chunk as 75


def test_full_chunk_moves_the_words_after_a_near_comma_to_the_next_chunk():
    first, second = chunk_prompt("cat " * 70 + ", " + "dog " * 10, clip_tokenizer()).chunks
    assert first.tokens[1:73] == [*[CAT] * 70, COMMA, EOS]  # cut after the comma, then padded
    assert second.tokens[1:12] == [*[DOG] * 10, EOS]
    # A comma further back than 20 tokens is not used: the chunk is cut where it fills.
    first, second = chunk_prompt("cat " * 50 + ", " + "dog " * 30, clip_tokenizer()).chunks
    assert first.tokens[1:76] == [*[CAT] * 50, COMMA, *[DOG] * 24]
    assert second.tokens[1:8] == [*[DOG] * 6, EOS]


def test_an_embedding_is_never_split_across_chunks():
    tokenizer = clip_tokenizer()
    index = EmbeddingIndex(tokenizer, {"mystyle": 5})
    first, second = chunk_prompt("cat " * 73 + "mystyle", tokenizer, index).chunks
    assert first.tokens[1:75] == [*[CAT] * 73, EOS] and not first.fixes
    assert second.fixes == [(0, "mystyle")]
    assert second.tokens[1:7] == [*[EMBEDDING_PLACEHOLDER] * 5, EOS]


def test_weights_follow_the_pieces_and_an_empty_prompt_is_one_chunk():
    (chunk,) = chunk_pieces([("a ", 1.0), ("cat", 1.5)], clip_tokenizer()).chunks
    assert chunk.multipliers[:4] == [1.0, 1.0, 1.5, 1.0]
    empty = chunk_prompt("", clip_tokenizer())
    assert len(empty.chunks) == 1 and empty.chunks[0].tokens == [BOS, *[EOS] * 76]
    assert count_tokens("", clip_tokenizer()) == (0, 75)


def test_token_counter_as_a1111():
    tokenizer = clip_tokenizer()
    assert count_tokens("a photo of a cat", tokenizer) == (5, 75)
    assert count_tokens("a photo of a cat <lora:thing:0.7>", tokenizer) == (5, 75)
    assert count_tokens("cat " * 80, tokenizer) == (80, 150)
    assert count_tokens("cat " * 75, tokenizer) == (75, 75)
    # Prompt editing: the longest text of the schedule counts.
    assert count_tokens("[cat:a cat with a hat:0.5]", tokenizer) == (5, 75)
    assert count_tokens("(cat:1.3)", tokenizer) == (1, 75)


# --- encoding -------------------------------------------------------------------------------------------------------


def test_plain_prompt_encodes_exactly_as_diffusers(sd1, sdxl):
    for pipe, family in ((sd1, SD1), (sdxl, SDXL)):
        ours = PromptEncoder(pipe, family).encode("a photo of a cat")
        with torch.inference_mode():
            theirs = pipe.encode_prompt(
                "a photo of a cat", device="cpu", num_images_per_prompt=1, do_classifier_free_guidance=False
            )
        assert torch.equal(ours.embeds, theirs[0])
        if family is SDXL:
            assert torch.equal(ours.pooled, theirs[2])


def test_long_prompt_is_two_chunks_concatenated(sd1):
    encoder = PromptEncoder(sd1, SD1)
    long = encoder.encode("cat " * 75 + "dog " * 5)
    assert long.embeds.shape == (1, 154, 32)
    torch.testing.assert_close(long.embeds[:, :77], encoder.encode("cat " * 75).embeds)
    torch.testing.assert_close(long.embeds[:, 77:], encoder.encode("dog " * 5).embeds)


def test_weight_one_is_exactly_the_plain_word(sd1):
    encoder = PromptEncoder(sd1, SD1)
    assert torch.equal(encoder.encode("a photo of a (cat:1.0)").embeds, encoder.encode("a photo of a cat").embeds)


def test_weight_scales_its_tokens_and_restores_the_mean(sd1):
    encoder = PromptEncoder(sd1, SD1)
    plain = encoder.encode("a photo of a cat").embeds[0]
    weighted = encoder.encode("a photo of a (cat:1.5)").embeds[0]
    ratio = weighted / plain
    scale = ratio[0, 0]  # the mean restoration's factor, the same for every position
    cat = 5  # BOS a photo of a cat
    others = torch.cat([ratio[:cat], ratio[cat + 1 :]])
    torch.testing.assert_close(others, torch.full_like(others, float(scale)))
    torch.testing.assert_close(ratio[cat], torch.full_like(ratio[cat], float(scale) * 1.5))
    torch.testing.assert_close(weighted.mean(), plain.mean())
    assert not torch.allclose(scale, torch.tensor(1.0))


def test_clip_skip_two_is_the_penultimate_layer_through_the_final_norm(sd1):
    ids = torch.tensor([[BOS, 320, 1125, 539, 320, CAT, *[EOS] * 71]])
    with torch.inference_mode():
        hidden = sd1.text_encoder(input_ids=ids, output_hidden_states=True).hidden_states
        manual = sd1.text_encoder.final_layer_norm(hidden[-2])
    skipped = PromptEncoder(sd1, SD1, clip_skip=2).encode("a photo of a cat").embeds
    assert torch.equal(skipped, manual)
    assert not torch.allclose(skipped, PromptEncoder(sd1, SD1).encode("a photo of a cat").embeds)


def test_sd2_clip_skip_one_and_two_are_both_the_loaded_penultimate_encoder():
    pipe = make_pipeline("SD2")
    one, two, three = (PromptEncoder(pipe, SD2, clip_skip=n).encode("a photo of a cat").embeds for n in (1, 2, 3))
    assert torch.equal(one, two) and not torch.allclose(two, three)


def test_sdxl_concatenates_both_encoders_and_pools_the_first_chunk(sdxl):
    encoder = PromptEncoder(sdxl, SDXL)
    long = encoder.encode("cat " * 75 + "dog " * 5)
    first = encoder.encode("cat " * 75)
    assert long.embeds.shape == (1, 154, 32 + 128) and long.pooled.shape == (1, 48)
    # Chunks are encoded as one batch: equal up to the last bits of batched arithmetic.
    torch.testing.assert_close(long.pooled, first.pooled)
    torch.testing.assert_close(long.embeds[:, :77], first.embeds)
    assert not torch.allclose(long.pooled, encoder.encode("dog " * 5).pooled)
    ids = torch.tensor([[BOS, *[CAT] * 75, EOS]])
    with torch.inference_mode():
        assert torch.equal(first.pooled, sdxl.text_encoder_2(input_ids=ids).text_embeds)
        penultimate = sdxl.text_encoder(input_ids=ids, output_hidden_states=True).hidden_states[-2]
    assert torch.equal(first.embeds[..., :32], penultimate)


def test_negative_is_padded_with_empty_chunks_to_the_positive_length(sd1):
    prompts = encode_job_prompts(sd1, SD1, "cat " * 100, "blurry", steps=4)
    inputs = prompts.pipeline_inputs(batch_size=2)
    assert inputs["prompt_embeds"].shape == inputs["negative_prompt_embeds"].shape == (2, 154, 32)
    encoder = PromptEncoder(sd1, SD1)
    negative = inputs["negative_prompt_embeds"][:1]
    assert torch.equal(negative[:, :77], encoder.encode("blurry").embeds)
    assert torch.equal(negative[:, 77:], encoder.encode("").embeds)


def test_prompt_editing_switches_at_a1111s_step(sd1):
    prompts = encode_job_prompts(sd1, SD1, "[cat:dog:0.5]", "", steps=10)
    encoder = PromptEncoder(sd1, SD1)
    cat, dog = encoder.encode("cat").embeds, encoder.encode("dog").embeds
    # end step int(0.5 x 10) = 5: loop steps 0..5 use "cat", as A1111 (current_step <= end_at_step).
    assert [torch.equal(prompts.positive.at(i).embeds, cat) for i in range(10)] == [True] * 6 + [False] * 4
    assert all(torch.equal(prompts.positive.at(i).embeds, dog) for i in range(6, 10))
    assert prompts.changes_over_steps and not encode_job_prompts(sd1, SD1, "cat", "", steps=10).changes_over_steps


def test_alternation_and_padding_of_every_scheduled_text(sd1):
    prompts = encode_job_prompts(sd1, SD1, "[cat|dog]", "[blurry:" + "ugly " * 80 + ":2]", steps=4)
    encoder = PromptEncoder(sd1, SD1)
    cat, dog = encoder.encode("cat").embeds, encoder.encode("dog").embeds
    picked = [prompts.positive.at(i).embeds[:, :77] for i in range(4)]
    assert [torch.equal(p, cat) for p in picked] == [True, True, False, True]
    assert torch.equal(picked[2], dog)
    shapes = {c.embeds.shape for c in (*prompts.positive.conditionings, *prompts.negative.conditionings)}
    assert shapes == {(1, 154, 32)}


# --- through the engine ---------------------------------------------------------------------------------------------


def test_prompt_editing_reaches_the_unet_at_the_switch_step(engine):
    loaded = engine.models.activate("tiny-sd1.safetensors").loaded
    seen = []
    handle = loaded.pipeline.unet.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(kwargs["encoder_hidden_states"].clone()), with_kwargs=True
    )
    try:
        engine.generate(tiny_request(checkpoint="tiny-sd1.safetensors", prompt="[cat:dog:0.5]", steps=4))
    finally:
        handle.remove()
    encoder = PromptEncoder(loaded.pipeline, SD1)
    cat, dog, blurry = (encoder.encode(text).embeds[0] for text in ("cat", "dog", "blurry"))
    assert len(seen) == 4 and all(s.shape == (2, 77, 32) for s in seen)
    assert all(torch.equal(s[0], blurry) for s in seen)  # [negative, positive] with guidance
    assert [torch.equal(s[1], cat) for s in seen] == [True, True, True, False]  # end step 2: steps 0, 1, 2
    assert torch.equal(seen[3][1], dog)


def test_edited_prompt_image_differs_from_both_texts_and_is_deterministic(engine):
    def run(prompt):
        return pixels(engine.generate(tiny_request(checkpoint="tiny-sd1.safetensors", prompt=prompt, steps=4)))

    edited = run("[cat:dog:0.5]")
    assert np.array_equal(edited, run("[cat:dog:0.5]"))
    assert not np.array_equal(edited, run("cat")) and not np.array_equal(edited, run("dog"))


@pytest.mark.parametrize("checkpoint", ["tiny-sd1.safetensors", "tiny-sdxl.safetensors"])
def test_long_weighted_prompt_generates_deterministically(engine, checkpoint):
    prompt = "(masterpiece:1.3), a photo of a cat, " + "detailed fur, " * 30 + "[blurry] <lora:none:0.5> BREAK dog"
    request = tiny_request(checkpoint=checkpoint, prompt=prompt, negative_prompt="((ugly))", steps=3)
    first, second = engine.generate(request), engine.generate(request)
    assert np.array_equal(pixels(first), pixels(second))
    other = engine.generate(request.with_changes(prompt=prompt.replace("1.3", "0.6")))
    assert not np.array_equal(pixels(first), pixels(other))
    assert first.images[0].infotext.startswith(prompt)  # the prompt as typed, tags included
