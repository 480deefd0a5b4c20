"""Applies the LoRAs a prompt names (<lora:name:weight>) to the loaded checkpoint through diffusers' LoRA loading.

Loaded adapters stay in the checkpoint's modules (the derived img2img/inpaint/ControlNet pipelines share them), so
changing LoRAs never reloads the checkpoint; each job activates its own set with its weights, or disables them all.
"""

from __future__ import annotations

import logging
import warnings
import weakref
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from diffusers import DiffusionPipeline
from diffusers.utils.state_dict_utils import (
    convert_state_dict_to_diffusers,
    convert_state_dict_to_peft,
    convert_unet_state_dict_to_peft,
)
from transformers.utils import logging as transformers_logging

from core.checkpoint_files import StateDict, load_state_dict
from core.errors import UserError
from core.loader import LoadedCheckpoint
from core.lora_files import family_of, find_lora, lora_hash, unsupported_format
from core.placement import lift_placement
from core.prompt_syntax import extract_extra_networks, lora_multipliers
from core.registry import ModelEntry, ModelRegistry

log = logging.getLogger(__name__)

LORA_TAG_KINDS = ("lora", "lyco")  # A1111 reads <lyco:…> (the old LyCORIS extension's tag) as a LoRA too
DEFAULT_CAPACITY = 8  # adapters kept loaded per checkpoint; each holds its weights on the device


@dataclass(frozen=True)
class LoraUse:
    """One LoRA of a job and its two multipliers (A1111's te and unet)."""

    name: str  # as the prompt names it
    te: float
    unet: float


def lora_uses(prompt: str, negative_prompt: str) -> list[LoraUse]:
    """The <lora:…> tags of both prompts (A1111 reads both), in order; the same LoRA twice adds up its weights,
    as applying it twice does. UserError for a weight that is not a number. (The text encoders never see the tags:
    core.conditioning takes them out.)"""
    weights: dict[str, tuple[float, float]] = {}
    for text in (prompt, negative_prompt):
        for tag in extract_extra_networks(text)[1]:
            if tag.kind not in LORA_TAG_KINDS:
                continue
            te, unet = lora_multipliers(tag)
            name = tag.name.strip()
            old_te, old_unet = weights.get(name, (0.0, 0.0))
            weights[name] = (old_te + te, old_unet + unet)
    return [LoraUse(name, te, unet) for name, (te, unet) in weights.items()]


@dataclass(frozen=True)
class AppliedLoras:
    """What one job got: the notices for the LoRAs it skipped, and "name: hash" of those applied."""

    notices: list[str] = field(default_factory=list)
    hashes: list[tuple[str, str]] = field(default_factory=list)

    @property
    def infotext(self) -> dict[str, str]:
        """A1111's "Lora hashes" field (names lose ':' and ',', which would break the field)."""
        if not self.hashes:
            return {}
        items = [f"{name.replace(':', '').replace(',', '')}: {short}" for name, short in self.hashes]
        return {"Lora hashes": ", ".join(items)}


@dataclass
class _Adapter:
    name: str  # the adapter's name in the modules (PEFT keys ModuleDicts by it, so no dots)
    components: tuple[str, ...]  # "unet", "text_encoder", "text_encoder_2": where it has layers


@dataclass
class _CheckpointAdapters:
    """The adapters loaded into one checkpoint's modules, most recently used last."""

    adapters: OrderedDict[tuple, _Adapter] = field(default_factory=OrderedDict)
    refused: dict[tuple, str] = field(default_factory=dict)  # file stamp → why it does not fit this checkpoint
    next_id: int = 0


class LoraLibrary:
    """Finds LoRA files, loads them into checkpoints once, and sets each job's LoRAs and weights."""

    def __init__(self, registry: ModelRegistry, capacity: int = DEFAULT_CAPACITY):
        self.registry = registry
        self.capacity = capacity
        # Keyed by the pipeline, so a checkpoint's adapters are forgotten when the model cache lets it go.
        self._loaded: weakref.WeakKeyDictionary[DiffusionPipeline, _CheckpointAdapters] = weakref.WeakKeyDictionary()

    def apply(self, loaded: LoadedCheckpoint, uses: list[LoraUse]) -> AppliedLoras:
        """Make exactly these LoRAs active on the checkpoint (none: all LoRA layers off, the plain model)."""
        pipe = loaded.pipeline
        state = self._loaded.setdefault(pipe, _CheckpointAdapters())
        notices: list[str] = []
        active: dict[str, tuple[LoraUse, ModelEntry, _Adapter]] = {}  # by adapter: one file may have two names
        for use in uses:
            entry = find_lora(self.registry, use.name)
            if entry is None:
                notices.append(f"LoRA '{use.name}' was not found in {self.registry.folder('lora')}: skipped.")
                continue
            adapter, notice = self._adapter(loaded, state, entry, use.name)
            if adapter is None:
                notices.append(notice)
                continue
            if adapter.name in active:
                first = active[adapter.name][0]
                use = LoraUse(first.name, first.te + use.te, first.unet + use.unet)
            active[adapter.name] = (use, entry, adapter)
        chosen = list(active.values())
        # PEFT adds the adapters' outputs in the order given, and float sums depend on their order: one canonical
        # order (the files' names) gives the same pixels for the same tags in any order, on every machine.
        canonical = sorted(chosen, key=lambda item: item[1].name)
        self._activate(pipe, state, [(use, adapter) for use, _, adapter in canonical])
        self._evict(pipe, state, keep=set(active))
        hashes = [(use.name, lora_hash(self.registry, entry)) for use, entry, _ in chosen]
        return AppliedLoras(notices, hashes)

    def _activate(self, pipe: DiffusionPipeline, state: _CheckpointAdapters, active: list) -> None:
        if not state.adapters:
            return  # nothing was ever loaded: the modules are the plain checkpoint's
        if not active:
            pipe.disable_lora()
            return
        pipe.enable_lora()
        names, weights = [], []
        for use, adapter in active:
            names.append(adapter.name)
            # Only the parts the adapter has: diffusers warns about weights for parts it lacks.
            weights.append({part: use.unet if part == "unet" else use.te for part in adapter.components})
        pipe.set_adapters(names, weights)

    def _adapter(
        self, loaded: LoadedCheckpoint, state: _CheckpointAdapters, entry: ModelEntry, shown: str
    ) -> tuple[_Adapter | None, str]:
        """The file's adapter in this checkpoint, loading it the first time; (None, notice) when it cannot be."""
        key = _file_key(entry.path)
        if key in state.adapters:
            state.adapters.move_to_end(key)
            return state.adapters[key], ""
        if key in state.refused:
            return None, state.refused[key].replace("{name}", shown)
        try:
            converted, reason = _prepare(load_state_dict(entry.path), loaded)
        except UserError as exc:
            return None, f"LoRA '{shown}' could not be read: {exc} Skipped."
        if converted is None:
            state.refused[key] = reason  # the file is not read again until it changes
            return None, reason.replace("{name}", shown)
        name = f"lora_{state.next_id}"
        state.next_id += 1
        lift_placement(loaded.placement)
        try:
            with _quiet_second_adapter():
                loaded.pipeline.load_lora_weights(converted, adapter_name=name)
        except Exception as exc:  # a LoRA diffusers cannot take must not end the job, nor stay half-loaded
            log.exception("Could not apply LoRA %s", entry.path)
            _delete(loaded.pipeline, name)
            first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            return None, f"LoRA '{shown}' could not be applied ({first_line}): skipped."
        parts = tuple(part for part, names in loaded.pipeline.get_list_adapters().items() if name in names)
        adapter = state.adapters[key] = _Adapter(name, parts)
        log.info("Loaded LoRA %s into %s (%s)", entry.name, loaded.path.name, ", ".join(parts))
        return adapter, ""

    def _evict(self, pipe: DiffusionPipeline, state: _CheckpointAdapters, keep: set[str]) -> None:
        """At most `capacity` adapters stay loaded: the least recently used go, never one this job uses."""
        for key in list(state.adapters):
            if len(state.adapters) <= self.capacity:
                return
            if state.adapters[key].name not in keep:
                _delete(pipe, state.adapters.pop(key).name)


@contextmanager
def _quiet_second_adapter():
    """Hide the alarms a model's second adapter raises, which is what this cache is for: PEFT's "multiple adapters"
    warning, and transformers 5's load report listing the first adapter's weights as "MISSING … newly initialized"
    (they are not: the first adapter gives the same pixels afterwards, which tests/test_lora.py checks)."""
    report_logger = logging.getLogger("transformers.integrations.peft")
    level, bars = report_logger.level, transformers_logging.is_progress_bar_enabled()
    report_logger.setLevel(logging.ERROR)
    transformers_logging.disable_progress_bar()  # a bar per text encoder for a few small tensors
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Already found a `peft_config`")
            yield
    finally:
        report_logger.setLevel(level)
        if bars:
            transformers_logging.enable_progress_bar()


def _file_key(path: Path) -> tuple:
    # A file replaced under the same name is a new LoRA.
    stat = path.stat()
    return (str(path.resolve()), stat.st_size, stat.st_mtime_ns)


def _delete(pipe: DiffusionPipeline, name: str) -> None:
    present = {n for names in pipe.get_list_adapters().values() for n in names}
    if name in present:
        pipe.delete_adapters(name)


def _prepare(lora: StateDict, loaded: LoadedCheckpoint) -> tuple[StateDict | None, str]:
    """The LoRA ready for `load_lora_weights`, or (None, why it cannot be applied to this checkpoint) as a notice
    with a {name} field."""
    fmt = unsupported_format(lora)
    if fmt is not None:
        return None, f"LoRA '{{name}}' is in {fmt} format, which this version cannot apply: skipped."
    checkpoint = loaded.family.label
    trained_for = family_of({key: tuple(value.shape) for key, value in lora.items()})
    if trained_for is not None and trained_for != checkpoint:
        return None, f"LoRA '{{name}}' is for {trained_for} but the checkpoint is {checkpoint}: skipped."
    try:
        converted = _for_pipeline(lora, loaded.pipeline)
    except (ValueError, KeyError, IndexError) as exc:
        return None, f"LoRA '{{name}}' could not be read as a LoRA ({str(exc).strip()[:200]}): skipped."
    misfits, total = _misfits(converted, loaded.pipeline)
    if misfits or not total:
        example = f" (e.g. {misfits[0]})" if misfits else ""
        return None, (
            f"LoRA '{{name}}' does not fit the checkpoint ({checkpoint}): {len(misfits)} of its {total} layers are "
            f"missing from it or have other shapes{example}: skipped."
        )
    return converted, ""


def _for_pipeline(lora: StateDict, pipe: DiffusionPipeline) -> StateDict:
    """The LoRA in the diffusers layout that `load_lora_weights` takes as it is.

    diffusers converts Kohya names itself, but applies Kohya's per-layer alphas correctly only when they are all
    equal, so each alpha/rank is folded into its up weight first (exact: the delta is alpha/rank * up @ down). And
    transformers 5's CLIPTextModel has no `text_model` level, which trained LoRAs name; diffusers drops it only where
    the model lacks that attribute, and our loader aliases it for clip skip, so it is dropped here.
    """
    folded = _fold_alphas(lora)
    converted, _alphas = type(pipe).lora_state_dict(folded, unet_config=pipe.unet.config)
    result = {}
    for key, value in converted.items():
        part, _, rest = key.partition(".")
        module = getattr(pipe, part, None)
        is_encoder = part.startswith("text_encoder") and isinstance(module, torch.nn.Module)
        if is_encoder and "text_model" not in module._modules:
            rest = rest.removeprefix("text_model.")
        result[f"{part}.{rest}"] = value
    return result


def _fold_alphas(lora: StateDict) -> StateDict:
    folded = dict(lora)
    for key in [k for k in lora if k.endswith(".alpha")]:
        module = key.removesuffix(".alpha")
        up, down = f"{module}.lora_up.weight", f"{module}.lora_down.weight"
        if up in folded and down in folded:
            rank = folded[down].shape[0]
            scale = float(folded.pop(key)) / rank
            folded[up] = (folded[up].float() * scale).to(folded[up].dtype)
    return folded


def _misfits(converted: StateDict, pipe: DiffusionPipeline) -> tuple[list[str], int]:
    """The LoRA's layers that the pipeline lacks or whose shapes differ, in PEFT's names as loading will use them."""
    by_part: dict[str, StateDict] = {}
    for key, value in converted.items():
        part, _, rest = key.partition(".")
        by_part.setdefault(part, {})[rest] = value
    misfits, total = [], 0
    for part, weights in by_part.items():
        module = getattr(pipe, part, None)
        if part == "unet":
            peft = weights if any("lora_A" in k for k in weights) else convert_unet_state_dict_to_peft(weights)
        else:
            peft = convert_state_dict_to_peft(convert_state_dict_to_diffusers(weights))
        for key, value in peft.items():
            if not key.endswith("lora_A.weight"):
                continue
            total += 1
            target = key.removesuffix(".lora_A.weight")
            up = peft.get(f"{target}.lora_B.weight")
            if not isinstance(module, torch.nn.Module) or not _fits(module, target, value, up):
                misfits.append(f"{part}.{target}")
    return misfits, total


def _fits(model: torch.nn.Module, target: str, down: torch.Tensor, up: torch.Tensor | None) -> bool:
    try:
        layer = model.get_submodule(target)
    except AttributeError:
        return False
    if hasattr(layer, "get_base_layer"):  # already wrapped by PEFT for an earlier LoRA
        layer = layer.get_base_layer()
    weight = getattr(layer, "weight", None)
    if not isinstance(weight, torch.Tensor) or up is None:
        return False
    if isinstance(layer, torch.nn.Conv2d):
        return down.dim() == 4 and down.shape[1] == layer.in_channels and up.shape[0] == layer.out_channels
    return down.dim() == 2 and down.shape[1] == weight.shape[1] and up.shape[0] == weight.shape[0]
