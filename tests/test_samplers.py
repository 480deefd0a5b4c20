"""A1111 sampler names build the right diffusers schedulers, with every schedule type they claim."""

from __future__ import annotations

import importlib.util
import inspect
import math

import numpy as np
import pytest
import torch
from diffusers import DPMSolverMultistepScheduler, EulerDiscreteScheduler

from core import samplers
from core.errors import UserError
from core.families import SD1
from core.samplers import (
    SAMPLERS,
    SCHEDULE_TYPES,
    check_choice,
    make_scheduler,
    schedule_type_label,
    split_legacy_sampler_name,
)

BASE = SD1.scheduler_config
V_BASE = {**BASE, "prediction_type": "v_prediction"}
HAS_TORCHSDE = importlib.util.find_spec("torchsde") is not None


def _param(name: str, *rest: str):
    needs_missing = SAMPLERS[name].requires == "torchsde" and not HAS_TORCHSDE
    return pytest.param(name, *rest, marks=pytest.mark.skipif(needs_missing, reason="torchsde is not installed"))


COMBOS = [_param(name, st) for name, spec in SAMPLERS.items() for st in spec.schedule_types]
NAMES = [_param(name) for name in SAMPLERS]


def _alphas_cumprod() -> torch.Tensor:
    return EulerDiscreteScheduler.from_config(BASE).alphas_cumprod.double()


def _karras(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> np.ndarray:
    """k-diffusion's get_sigmas_karras, without the appended zero."""
    ramp = np.linspace(0, 1, n)
    return (sigma_max ** (1 / rho) + ramp * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho


def _sample_toy(scheduler, steps: int = 20, target: float = 0.5, seed: int = 0) -> torch.Tensor:
    """Run the pipeline loop with a perfect denoiser for data that is always `target`; return the final latents.

    The "UNet" sees what a real one sees (scale_model_input's output and the timestep) and answers in the
    scheduler's prediction_type, so every sampler should land on `target`.
    """
    alphas_cumprod = _alphas_cumprod()
    scheduler.set_timesteps(steps)
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(1, 4, 8, 8, generator=generator) * scheduler.init_noise_sigma
    step_kwargs = {"generator": generator} if "generator" in inspect.signature(scheduler.step).parameters else {}
    for t in scheduler.timesteps:
        model_in = scheduler.scale_model_input(x, t)
        low = int(float(t))
        frac = float(t) - low
        alpha = alphas_cumprod[low] * (1 - frac) + alphas_cumprod[min(low + 1, 999)] * frac
        a, s = float(alpha.sqrt()), float((1 - alpha).sqrt())
        eps = (model_in - a * target) / s
        output = a * eps - s * target if scheduler.config.prediction_type == "v_prediction" else eps
        x = scheduler.step(output, t, x, **step_kwargs).prev_sample
    return x


def test_sampler_list_follows_a1111_order():
    expected = ["DPM++ 2M", "DPM++ SDE", "DPM++ 2M SDE", "DPM++ 2M SDE Heun", "DPM++ 2S a", "Euler a", "Euler"]
    expected += ["LMS", "Heun", "DPM2", "DPM2 a", "DDIM", "PLMS", "UniPC", "LCM"]
    assert list(SAMPLERS) == expected


def test_specs_are_consistent():
    for name, spec in SAMPLERS.items():
        assert spec.schedule_types[0] == "Automatic", name
        assert set(spec.schedule_types) <= set(SCHEDULE_TYPES), name
        assert spec.default_schedule_type in (None, *spec.schedule_types), name


@pytest.mark.parametrize("sampler_name, schedule_type", COMBOS)
def test_every_claimed_schedule_type_builds_and_sets_timesteps(sampler_name, schedule_type):
    scheduler = make_scheduler(sampler_name, schedule_type, BASE)
    assert isinstance(scheduler, SAMPLERS[sampler_name].scheduler_class)
    scheduler.set_timesteps(20)
    # Second-order schedulers (Heun, DPM2, DPM++ SDE) list 2 * steps - 1 timesteps; PLMS one extra warm-up step.
    assert math.ceil(len(scheduler.timesteps) / scheduler.order) in (20, 21)
    assert torch.isfinite(torch.as_tensor(scheduler.timesteps, dtype=torch.float64)).all()


@pytest.mark.filterwarnings("ignore:Should have")  # torchsde's float-rounding chatter
@pytest.mark.parametrize("sampler_name, schedule_type", COMBOS)
def test_every_combination_denoises_a_toy_problem(sampler_name, schedule_type):
    x = _sample_toy(make_scheduler(sampler_name, schedule_type, BASE))
    assert torch.isfinite(x).all()
    # DDIM, PLMS and UniPC stop at sigma_min (~0.03) as in A1111, hence a little leftover noise.
    assert (x - 0.5).abs().mean() < 0.05


@pytest.mark.filterwarnings("ignore:Should have")
@pytest.mark.parametrize("sampler_name", NAMES)
def test_v_prediction_is_carried_over_and_used(sampler_name):
    scheduler = make_scheduler(sampler_name, "Automatic", V_BASE)
    assert scheduler.config.prediction_type == "v_prediction"
    assert scheduler.config.beta_schedule == "scaled_linear"
    assert (_sample_toy(scheduler) - 0.5).abs().mean() < 0.05


@pytest.mark.parametrize(
    "sampler_name, schedule_type",
    [("DPM++ 2M", "Automatic"), ("DPM++ 2M", "Karras"), ("Euler", "Karras"), ("LMS", "Karras"), ("UniPC", "Karras")],
)
def test_karras_sets_karras_sigmas(sampler_name, schedule_type):
    scheduler = make_scheduler(sampler_name, schedule_type, BASE)
    assert scheduler.config.use_karras_sigmas is True
    scheduler.set_timesteps(20)
    alphas_cumprod = _alphas_cumprod()
    sigmas = ((1 - alphas_cumprod) / alphas_cumprod).sqrt()
    # A1111 spans the model's whole sigma range: sigma(t=0) to sigma(t=999).
    expected = _karras(20, float(sigmas[0]), float(sigmas[-1]))
    np.testing.assert_allclose(scheduler.sigmas[:20].double().numpy(), expected, rtol=1e-4)


def test_sigma_schedule_defaults_follow_a1111():
    dpm_2m_sde = make_scheduler("DPM++ 2M SDE", "Automatic", BASE)
    assert dpm_2m_sde.config.use_exponential_sigmas is True
    assert dpm_2m_sde.config.algorithm_type == "sde-dpmsolver++"
    euler = make_scheduler("Euler", "Automatic", BASE)
    assert not euler.config.use_karras_sigmas
    euler.set_timesteps(20)  # k-diffusion's plain schedule: timesteps evenly from 999 to 0
    np.testing.assert_allclose(euler.timesteps.numpy(), np.linspace(999, 0, 20), atol=1e-3)
    ddim = make_scheduler("DDIM", "Automatic", BASE)
    ddim.set_timesteps(20)  # A1111: range(0, 1000, 1000 // steps) + 1
    assert ddim.timesteps.tolist() == [t + 1 for t in range(0, 1000, 50)][::-1]


def test_simple_matches_a1111_simple_scheduler():
    scheduler = make_scheduler("Euler", "Simple", BASE)
    scheduler.set_timesteps(20)
    # A1111's simple_scheduler takes sigmas[-(1 + int(x * 1000 / n))], i.e. timestep 999 - int(x * 50).
    assert scheduler.timesteps.tolist() == [999 - int(x * 1000 / 20) for x in range(20)]


def test_schedule_type_label_resolves_sampler_defaults_like_a1111():
    assert schedule_type_label("DPM++ 2M", "Automatic") == "Karras"
    assert schedule_type_label("DPM++ 2M SDE", "Automatic") == "Exponential"
    assert schedule_type_label("DPM2 a", "Automatic") == "Karras"
    assert schedule_type_label("Euler a", "Automatic") == "Automatic"
    assert schedule_type_label("UniPC", "Automatic") == "Automatic"
    assert schedule_type_label("Euler", "Uniform") == "Uniform"
    assert schedule_type_label("DPM++ 2M", "Exponential") == "Exponential"


def test_sampler_settings_replace_those_in_a_checkpoint_config():
    saved = {**BASE, "_class_name": "DPMSolverMultistepScheduler", "use_karras_sigmas": True, "solver_order": 3}
    scheduler = make_scheduler("DPM++ 2M", "Uniform", saved)
    assert isinstance(scheduler, DPMSolverMultistepScheduler)
    assert scheduler.config.use_karras_sigmas is False
    assert scheduler.config.solver_order == 2
    assert scheduler.config.timestep_spacing == "linspace"


def test_euler_step_is_the_closed_form_update():
    scheduler = make_scheduler("Euler", "Automatic", BASE)
    scheduler.set_timesteps(20)
    generator = torch.Generator().manual_seed(1)
    sample = torch.randn(1, 4, 8, 8, generator=generator) * scheduler.init_noise_sigma
    eps = torch.randn(1, 4, 8, 8, generator=generator)
    t0 = scheduler.timesteps[0]
    sigma, sigma_next = scheduler.sigmas[0], scheduler.sigmas[1]
    prev = scheduler.step(eps, t0, sample).prev_sample
    # k-diffusion's sample_euler: d = (x - denoised) / sigma = eps; x += d * (sigma_next - sigma)
    torch.testing.assert_close(prev, sample + eps * (sigma_next - sigma))


def test_unknown_names_raise_user_error():
    with pytest.raises(UserError, match="Unknown sampler 'Euler b'"):
        make_scheduler("Euler b", "Automatic", BASE)
    with pytest.raises(UserError, match="Unknown schedule type 'Polyexponential'"):
        make_scheduler("Euler", "Polyexponential", BASE)
    with pytest.raises(UserError):
        schedule_type_label("nope", "Automatic")


@pytest.mark.parametrize("sampler_name, schedule_type", [("Euler a", "Karras"), ("LCM", "Karras"), ("DDIM", "Uniform")])
def test_unsupported_combination_names_what_is_allowed(sampler_name, schedule_type):
    with pytest.raises(UserError) as error:
        make_scheduler(sampler_name, schedule_type, BASE)
    message = str(error.value)
    assert sampler_name in message and schedule_type in message
    assert ", ".join(SAMPLERS[sampler_name].schedule_types) in message
    assert check_choice(sampler_name, "Automatic") is SAMPLERS[sampler_name]


def test_missing_torchsde_is_a_user_error(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        samplers.importlib.util, "find_spec", lambda name, *a: None if name == "torchsde" else real_find_spec(name, *a)
    )
    with pytest.raises(UserError, match="pip install torchsde"):
        make_scheduler("DPM++ SDE", "Automatic", BASE)


def test_legacy_sampler_names_split_into_schedule_type():
    assert split_legacy_sampler_name("DPM++ 2M Karras") == ("DPM++ 2M", "Karras")
    assert split_legacy_sampler_name("DPM++ 2M SDE Exponential") == ("DPM++ 2M SDE", "Exponential")
    assert split_legacy_sampler_name("DPM++ 2M SDE Heun Karras") == ("DPM++ 2M SDE Heun", "Karras")
    assert split_legacy_sampler_name("Euler a") == ("Euler a", "Automatic")
    assert split_legacy_sampler_name("DPM fast") == ("DPM fast", "Automatic")
