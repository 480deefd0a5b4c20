"""A job's prompt conditionings over the steps: each scheduled text encoded once, all padded alike, swapped per step."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from diffusers import DiffusionPipeline

from core.families import SDXL, Family
from core.prompt_encoding import Conditioning, EmbeddingVectors, PromptEncoder, pad_to_chunks
from core.prompt_syntax import extract_extra_networks, prompt_schedule


@dataclass(frozen=True)
class ScheduledConditioning:
    """One prompt's conditionings with the last step (A1111's end_at_step) each is used for."""

    ends: tuple[int, ...]
    conditionings: tuple[Conditioning, ...]

    def at(self, step: int) -> Conditioning:
        """The conditioning of loop step `step` (0-based), as A1111's reconstruct_cond_batch picks it: the first
        whose end is at or after the step. Past the last end (second-order samplers call the model more often
        than there are steps) the last one stays, where A1111 would fall back to the first."""
        for end, conditioning in zip(self.ends, self.conditionings, strict=True):
            if step <= end:
                return conditioning
        return self.conditionings[-1]

    @property
    def changes(self) -> bool:
        return len(set(map(id, self.conditionings))) > 1


@dataclass(frozen=True)
class JobPrompts:
    """What the pipeline gets instead of prompt strings, for every batch of one job."""

    family: Family
    positive: ScheduledConditioning
    negative: ScheduledConditioning
    embeddings_used: tuple[str, ...] = ()
    notices: tuple[str, ...] = field(default=())

    @property
    def changes_over_steps(self) -> bool:
        return self.positive.changes or self.negative.changes

    def pipeline_inputs(self, batch_size: int) -> dict[str, torch.Tensor]:
        """prompt_embeds & co. for the first step, the same conditioning for each image of the batch."""
        positive, negative = self.positive.at(0), self.negative.at(0)
        inputs = {
            "prompt_embeds": _repeat(positive.embeds, batch_size),
            "negative_prompt_embeds": _repeat(negative.embeds, batch_size),
        }
        if self.family is SDXL:
            inputs["pooled_prompt_embeds"] = _repeat(positive.pooled, batch_size)
            inputs["negative_pooled_prompt_embeds"] = _repeat(negative.pooled, batch_size)
        return inputs

    def callback_inputs(self) -> list[str]:
        """The tensors the step callback must see (diffusers' callback_on_step_end_tensor_inputs)."""
        if not self.changes_over_steps:
            return []
        return ["prompt_embeds", "add_text_embeds"] if self.family is SDXL else ["prompt_embeds"]

    def tensors_for_step(self, step: int, tensors: dict, guided: bool) -> dict[str, torch.Tensor]:
        """Replacements for the pipeline's conditioning tensors from loop step `step` on; {} when unchanged.

        With classifier-free guidance the pipeline holds [negative x batch, positive x batch]."""
        if step == 0 or (
            self.positive.at(step) is self.positive.at(step - 1)
            and self.negative.at(step) is self.negative.at(step - 1)
        ):
            return {}
        current = tensors["prompt_embeds"]
        batch = current.shape[0] // 2 if guided else current.shape[0]
        positive, negative = self.positive.at(step), self.negative.at(step)
        replaced = {"prompt_embeds": _stack(negative.embeds, positive.embeds, batch, guided).to(current)}
        if self.family is SDXL and "add_text_embeds" in tensors:
            pooled = _stack(negative.pooled, positive.pooled, batch, guided)
            replaced["add_text_embeds"] = pooled.to(tensors["add_text_embeds"])
        return replaced


def _repeat(tensor: torch.Tensor, batch: int) -> torch.Tensor:
    return tensor.repeat(batch, *[1] * (tensor.dim() - 1))


def _stack(negative: torch.Tensor, positive: torch.Tensor, batch: int, guided: bool) -> torch.Tensor:
    if not guided:
        return _repeat(positive, batch)
    return torch.cat([_repeat(negative, batch), _repeat(positive, batch)])


def encode_job_prompts(
    pipeline: DiffusionPipeline,
    family: Family,
    prompt: str,
    negative_prompt: str,
    steps: int,
    clip_skip: int = 1,
    embeddings: EmbeddingVectors | None = None,
    skipped_reasons: dict[str, str] | None = None,
) -> JobPrompts:
    """Encode both prompts' schedules over `steps` (extra-network tags removed), every distinct text once, and pad
    all conditionings of the job to the same number of chunks with the empty prompt's encoding."""
    encoder = PromptEncoder(pipeline, family, clip_skip, embeddings)
    schedules = [prompt_schedule(extract_extra_networks(text)[0], steps) for text in (prompt, negative_prompt)]
    encoded = {text: encoder.encode(text) for schedule in schedules for _, text in schedule}
    chunks = max(conditioning.chunks for conditioning in encoded.values())
    padded = {text: pad_to_chunks(c, chunks, encoder.empty()) for text, c in encoded.items()}
    positive, negative = (
        ScheduledConditioning(tuple(end for end, _ in s), tuple(padded[text] for _, text in s)) for s in schedules
    )
    reasons = skipped_reasons or {}
    notices = tuple(reasons.get(name, f"The embedding '{name}' was skipped.") for name in encoder.embeddings_skipped)
    return JobPrompts(family, positive, negative, tuple(encoder.embeddings_used), notices)
