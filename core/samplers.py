"""A1111 sampler names and "Schedule type" options, mapped onto diffusers schedulers."""

from __future__ import annotations

import copy
import functools
import importlib.util
import inspect
import json
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from core.errors import UserError

if TYPE_CHECKING:
    from diffusers.schedulers.scheduling_utils import SchedulerMixin

# The web process validates sampler names and writes infotext without importing diffusers (and with it torch):
# schedulers are named here and their classes imported only where a job builds one (the generation worker).

# A1111's labels (modules/sd_schedulers.py), in its order, limited to those diffusers reproduces:
# - Uniform and Normal: A1111 spaces timesteps evenly from 999 down to 0 (both give the same sigmas) = "linspace"
#   (k-diffusion interpolates log-sigma between training timesteps, diffusers sigma: a difference well under 1%).
# - Simple: every (1000/n)-th training sigma from the top, 999, 949, ... = diffusers "trailing" (exactly when n
#   divides 1000, otherwise within one timestep).
# - SGM Uniform: linspace(999, 0, n + 1)[:-1] = "trailing" up to rounding the timesteps to integers.
# - Karras / Exponential / Beta: diffusers ports k-diffusion's formulas (Beta with A1111's default alpha = beta = 0.6).
# Left out: Polyexponential, KL Optimal, Align Your Steps and DDIM (no diffusers option reproduces them).
SCHEDULE_TYPES: list[str] = ["Automatic", "Uniform", "Karras", "Exponential", "SGM Uniform", "Simple", "Normal", "Beta"]

_SPACINGS = {"Uniform": "linspace", "Normal": "linspace", "Simple": "trailing", "SGM Uniform": "trailing"}
_SIGMA_FLAGS = {"Karras": "use_karras_sigmas", "Exponential": "use_exponential_sigmas", "Beta": "use_beta_sigmas"}

# What a checkpoint's scheduler config may tell us about the model (its training noise schedule and what the
# UNet predicts). Everything else in it (solver order, karras flags, a saved class name) was someone's sampler
# choice, which the user's choice here replaces.
_MODEL_KEYS = (
    "num_train_timesteps",
    "beta_start",
    "beta_end",
    "beta_schedule",
    "trained_betas",
    "prediction_type",
    "steps_offset",
    "timestep_spacing",
    "clip_sample",
    "set_alpha_to_one",
    "rescale_betas_zero_snr",
)

_ALL = tuple(SCHEDULE_TYPES)
_SPACING_ONLY = ("Automatic", "Uniform", "SGM Uniform", "Simple", "Normal")  # schedulers without sigma options
_SIGMAS_ONLY = ("Automatic", "Karras", "Exponential", "Beta")  # schedulers with a fixed timestep spacing
# DDIM and PNDM step from t to t - 1000 // steps whatever the spacing, so "linspace" (strides of 999 / (steps - 1))
# leaves them off the schedule; "trailing" keeps the 1000 // steps stride.
_FIXED_STRIDE = ("Automatic", "SGM Uniform", "Simple")


@dataclass(frozen=True)
class SamplerSpec:
    """How one A1111 sampler is built from diffusers."""

    scheduler_name: str  # the diffusers class (e.g. "EulerDiscreteScheduler"), imported on first use
    kwargs: Mapping[str, Any]  # sampler-specific config on top of the family's base config
    schedule_types: tuple[str, ...]  # the "Schedule type" choices this scheduler can honour, "Automatic" first
    # What "Automatic" means in A1111 1.9+ when the sampler names a default (its options["scheduler"]); None means
    # A1111's plain default spacing, which `kwargs` already sets.
    default_schedule_type: str | None = None
    requires: str | None = None  # a Python package that must be importable, for a clear error if it is not

    @property
    def scheduler_class(self) -> type[SchedulerMixin]:
        import diffusers

        # DPMSolverSDEScheduler is a stand-in that raises on use when torchsde is missing; make_scheduler checks.
        return getattr(diffusers, self.scheduler_name)


def _spec(
    scheduler_name: str,
    schedule_types: tuple[str, ...],
    default_schedule_type: str | None = None,
    requires: str | None = None,
    **kwargs: Any,
) -> SamplerSpec:
    return SamplerSpec(scheduler_name, MappingProxyType(kwargs), schedule_types, default_schedule_type, requires)


# A1111's k-diffusion samplers space timesteps evenly from 999 to 0 unless a schedule type says otherwise
# (KDiffusionSampler.get_sigmas → model_wrap.get_sigmas), which is diffusers' "linspace", not the "leading"
# spacing that SD checkpoints' configs carry for DDIM/PNDM.
_K = {"timestep_spacing": "linspace"}

# In A1111's UI order (sd_samplers_kdiffusion, then sd_samplers_timesteps, then sd_samplers_lcm).
# Not offered: "DPM++ 3M SDE" (diffusers' third-order sde-dpmsolver++ update has a different D2 coefficient from
# k-diffusion's sample_dpmpp_3m_sde, and A1111 also drops the penultimate sigma), "DPM fast", "DPM adaptive",
# "Restart" and "DDIM CFG++" (no diffusers counterpart).
SAMPLERS: dict[str, SamplerSpec] = {
    # lower_order_final=False: k-diffusion uses the 2nd-order update on every step but the first and the last (the
    # last is 1st order here too, because the final sigma is zero); diffusers would also drop to 1st order on the
    # second-to-last step below 15 steps.
    "DPM++ 2M": _spec(
        "DPMSolverMultistepScheduler",
        _ALL,
        "Karras",
        algorithm_type="dpmsolver++",
        solver_order=2,
        solver_type="midpoint",
        lower_order_final=False,
        **_K,
    ),
    # diffusers' port of k-diffusion's sample_dpmpp_sde, Brownian-tree noise included (hence torchsde).
    "DPM++ SDE": _spec("DPMSolverSDEScheduler", _ALL, "Karras", requires="torchsde", **_K),
    # Same update as k-diffusion's sample_dpmpp_2m_sde (eta 1); noise comes from the job's generator rather than a
    # Brownian tree, so a seed gives a different (equally distributed) image than in A1111.
    "DPM++ 2M SDE": _spec(
        "DPMSolverMultistepScheduler",
        _ALL,
        "Exponential",
        algorithm_type="sde-dpmsolver++",
        solver_order=2,
        solver_type="midpoint",
        lower_order_final=False,
        **_K,
    ),
    "DPM++ 2M SDE Heun": _spec(
        "DPMSolverMultistepScheduler",
        _ALL,
        "Exponential",
        algorithm_type="sde-dpmsolver++",
        solver_order=2,
        solver_type="heun",
        lower_order_final=False,
        **_K,
    ),
    # Approximation: diffusers has no DPM++ 2S *ancestral*. The single-step 2nd-order DPM-Solver++ is the same
    # family of update; its SDE variant keeps the "a" character (fresh noise every step, results keep changing
    # with the step count) — its first-order step equals Euler a exactly. Differences from A1111: the noise is
    # injected by the SDE formula rather than by an ancestral sigma_up/sigma_down split, and a diffusers step is
    # one model call where A1111's 2S step is two, so the same step count does about half of A1111's work.
    # The single-step solver has no timestep-spacing option, hence sigma schedules only.
    "DPM++ 2S a": _spec(
        "DPMSolverSinglestepScheduler",
        _SIGMAS_ONLY,
        "Karras",
        algorithm_type="sde-dpmsolver++",
        solver_order=2,
        solver_type="midpoint",
        lower_order_final=True,  # diffusers requires it when the last sigma is zero
    ),
    # diffusers' Euler ancestral has no sigma-schedule options.
    "Euler a": _spec("EulerAncestralDiscreteScheduler", _SPACING_ONLY, **_K),
    "Euler": _spec("EulerDiscreteScheduler", _ALL, **_K),
    "LMS": _spec("LMSDiscreteScheduler", _ALL, **_K),
    "Heun": _spec("HeunDiscreteScheduler", _ALL, **_K),
    # Approximation: A1111 runs DPM2 / DPM2 a on steps+1 sigmas with the penultimate one dropped
    # ("discard_next_to_last_sigma"); diffusers' KDPM2 schedulers use the plain steps-long schedule.
    "DPM2": _spec("KDPM2DiscreteScheduler", _ALL, "Karras", **_K),
    "DPM2 a": _spec("KDPM2AncestralDiscreteScheduler", _ALL, "Karras", **_K),
    # A1111's DDIM/PLMS use timesteps range(0, 1000, 1000 // steps) + 1: the checkpoint config's own "leading"
    # spacing with steps_offset 1, so "Automatic" keeps the base config as it is.
    "DDIM": _spec("DDIMScheduler", _FIXED_STRIDE),
    # skip_prk_steps: A1111's PLMS starts with one pseudo-improved-Euler step, not PNDM's Runge-Kutta warm-up.
    "PLMS": _spec("PNDMScheduler", _FIXED_STRIDE, skip_prk_steps=True),
    # A1111's defaults (uni_pc_variant "bh1", uni_pc_order 3, uni_pc_skip_type "time_uniform"); time_uniform
    # evaluates the model at linspace(999, 0, steps + 1)[:-1], which is diffusers' "trailing" spacing, and ends at
    # t = 1/1000, i.e. sigma_min rather than zero (diffusers' bh1 update also turns to NaN on a zero final sigma).
    "UniPC": _spec(
        "UniPCMultistepScheduler",
        _ALL,
        solver_type="bh1",
        solver_order=3,
        predict_x0=True,
        timestep_spacing="trailing",
        final_sigmas_type="sigma_min",
    ),
    # Approximation: diffusers' LCM picks its steps from the 50-step schedule LCM models were distilled on
    # (e.g. 999, 759, 499, 259 for 4 steps); A1111 interpolates evenly spaced sigmas over that same sub-schedule.
    # The update itself (denoise, then re-noise to the next level) is the same. Its spacing is not configurable.
    "LCM": _spec("LCMScheduler", ("Automatic",)),
}


def check_choice(sampler_name: str, schedule_type: str) -> SamplerSpec:
    """The sampler's spec, or UserError when the sampler, the schedule type or their pairing is not available."""
    spec = SAMPLERS.get(sampler_name)
    if spec is None:
        raise UserError(f"Unknown sampler {sampler_name!r}. Choose one of: {', '.join(SAMPLERS)}.")
    if schedule_type not in SCHEDULE_TYPES:
        raise UserError(f"Unknown schedule type {schedule_type!r}. Choose one of: {', '.join(SCHEDULE_TYPES)}.")
    if schedule_type not in spec.schedule_types:
        raise UserError(
            f"The {sampler_name} sampler cannot use the {schedule_type} schedule type. "
            f"Schedule types it can use: {', '.join(spec.schedule_types)}."
        )
    return spec


def schedule_type_label(sampler_name: str, schedule_type: str) -> str:
    """What the infotext's "Schedule type" says, as A1111 1.9+ writes it.

    A1111 writes the schedule it resolved when "Automatic" stands for a sampler default (KDiffusionSampler.get_sigmas
    puts e.g. "Karras" into extra_generation_params, which overrides p.scheduler in create_infotext), and
    "Automatic" when the sampler has no default. We do the same, so our images read back like A1111's.
    """
    spec = check_choice(sampler_name, schedule_type)
    if schedule_type == "Automatic":
        return spec.default_schedule_type or "Automatic"
    return schedule_type


def _schedule_kwargs(scheduler_class: type[SchedulerMixin], schedule_type: str) -> dict[str, Any]:
    params = inspect.signature(scheduler_class.__init__).parameters
    if schedule_type in _SPACINGS:
        return {"timestep_spacing": _SPACINGS[schedule_type]}
    if schedule_type in _SIGMA_FLAGS:
        kwargs: dict[str, Any] = {flag: flag == _SIGMA_FLAGS[schedule_type] for flag in _SIGMA_FLAGS.values()}
        # Some schedulers derive these schedules from the sigmas at their spaced timesteps; "linspace" makes those
        # run from sigma(999) to sigma(0), the full range A1111 uses.
        if "timestep_spacing" in params:
            kwargs["timestep_spacing"] = "linspace"
        return kwargs
    return {}


def make_scheduler(sampler_name: str, schedule_type: str, base_config: Mapping[str, Any]) -> SchedulerMixin:
    """A fresh scheduler for this sampler and schedule type, on the family's (or checkpoint's) base config.

    The model facts in `base_config` (betas, prediction_type such as "v_prediction", ...) are kept; the sampler's
    own settings and the schedule type are applied on top. Builds from a dict only: never touches the network.
    """
    spec = check_choice(sampler_name, schedule_type)
    if spec.requires and importlib.util.find_spec(spec.requires) is None:
        raise UserError(
            f"The {sampler_name} sampler needs the Python package {spec.requires}, which is not installed. "
            f"Install it with `pip install {spec.requires}`, or choose another sampler."
        )
    effective = spec.default_schedule_type if schedule_type == "Automatic" else schedule_type
    config: dict[str, Any] = {key: base_config[key] for key in _MODEL_KEYS if key in base_config}
    config.update(spec.kwargs)
    if effective:
        config.update(_schedule_kwargs(spec.scheduler_class, effective))
    accepted = inspect.signature(spec.scheduler_class.__init__).parameters
    # Keys a scheduler does not take (clip_sample for Euler, ...) would only be logged and ignored by diffusers.
    config = {k: v for k, v in config.items() if k in accepted}
    # Schedulers keep per-generation state, so each job needs its own; but some are slow to construct (KDPM2 runs
    # a 1000-step set_timesteps in __init__, ~0.5 s), so each configuration is built once and copied after that.
    return copy.deepcopy(_built(spec.scheduler_class, json.dumps(config, sort_keys=True, default=_jsonable)))


@functools.lru_cache(maxsize=32)
def _built(scheduler_class: type[SchedulerMixin], config_json: str) -> SchedulerMixin:
    return scheduler_class.from_config(json.loads(config_json))


def _jsonable(value: Any) -> Any:
    # trained_betas may come as a numpy array or tensor; str() of those would elide values and collide.
    return value.tolist() if hasattr(value, "tolist") else str(value)


def split_legacy_sampler_name(name: str) -> tuple[str, str]:
    """Pre-1.9 A1111 names ("DPM++ 2M Karras") → (sampler, schedule type); other names → (name, "Automatic")."""
    for schedule_type in ("Karras", "Exponential"):
        suffix = f" {schedule_type}"
        if name.endswith(suffix) and name[: -len(suffix)] in SAMPLERS:
            return name[: -len(suffix)], schedule_type
    return name, "Automatic"
