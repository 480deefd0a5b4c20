"""The shapes trainers' noise (unit variance like Gaussian noise, but a latent's mean and coarse layout are hidden),
loss weights by noise level, and the base trainer's batches with what their captions say of the first object."""

from __future__ import annotations

import random
from types import SimpleNamespace

import torch

from training.models import noise_scheduler, tokenize
from training.scene_latents import SceneLatents
from training.scenes import POSITIONS, SHAPES, caption, random_scene
from training.train_base import (
    HIGH_NOISE_FLOOR,
    MIN_SNR_GAMMA,
    UNNAMED,
    caption_labels,
    diffusion_loss,
    loss_weights,
    training_batch,
    training_noise,
)

SHAPE = torch.Size([512, 4, 16, 16])  # the shapes model's 128 px latents


def noise(seed: int) -> torch.Tensor:
    return training_noise(SHAPE, torch.Generator().manual_seed(seed))


def test_same_seed_same_noise_and_unit_variance():
    assert torch.equal(noise(1), noise(1)) and not torch.equal(noise(1), noise(2))
    assert abs(noise(1).std().item() - 1) < 1e-4 and abs(noise(1).mean().item()) < 0.02


def test_the_mean_and_quadrants_are_noised_much_more_than_by_gaussian_noise():
    ours, gaussian = noise(3), torch.randn(SHAPE, generator=torch.Generator().manual_seed(3))
    # Gaussian noise leaves a 256-cell mean a standard error of 1/16 (what let a model read backgrounds from it).
    assert gaussian.mean(dim=(2, 3)).std() < 0.07
    assert ours.mean(dim=(2, 3)).std() > 2 * gaussian.mean(dim=(2, 3)).std()
    quadrant = (slice(None), slice(None), slice(0, 8), slice(0, 8))
    assert ours[quadrant].mean(dim=(2, 3)).std() > 1.5 * gaussian[quadrant].mean(dim=(2, 3)).std()


def test_loss_weights_keep_min_snr_at_low_noise_and_lift_high_noise():
    scheduler = noise_scheduler()
    steps = torch.arange(scheduler.config.num_train_timesteps)
    alphas = scheduler.alphas_cumprod[steps]
    snr = alphas / (1 - alphas)
    weights = loss_weights(scheduler, steps)
    low = snr > MIN_SNR_GAMMA
    assert torch.allclose(weights[low], MIN_SNR_GAMMA / snr[low])  # min-SNR-5, as before
    picture_weights = weights * snr  # what an x0 error costs: never below the floor, never above the cap
    assert picture_weights.min() >= HIGH_NOISE_FLOOR - 1e-6 and picture_weights.max() <= MIN_SNR_GAMMA + 1e-6
    # At the last step plain min-SNR would count a picture error 0.005 times; now 0.25 times, 50x as much.
    assert weights[-1] > 50 * (snr[-1].clamp(max=MIN_SNR_GAMMA) / snr[-1])


def test_the_loras_loss_draws_only_low_noise_timesteps():
    # train_lora trains its style below STYLE_STEPS only; the base draws from the whole schedule.
    drawn = []

    def record(noisy, steps, context):
        drawn.append(steps)
        return SimpleNamespace(sample=torch.zeros_like(noisy))

    latents, scheduler = torch.zeros(SHAPE), noise_scheduler()
    for below in (600, None):
        diffusion_loss(record, None, scheduler, latents, torch.Generator().manual_seed(0), below=below)
    low, everywhere = drawn
    assert 550 < int(low.max()) < 600 and int(low.min()) < 50
    assert int(everywhere.max()) > 950


def test_batches_label_each_captions_first_object_and_nothing_for_dropped_captions():
    rng = random.Random(5)
    scenes = [random_scene(rng) for _ in range(40)]
    captions = [[caption(scene, rng) for _ in range(2)] for scene in scenes]
    tokens = tokenize([text for pair in captions for text in pair]).view(40, 2, 77)
    data = SceneLatents(torch.arange(40.0).view(40, 1, 1, 1), tokens, tokenize([""])[0])
    labels = caption_labels(tokens)
    latents, batch_tokens, named = training_batch(data, 400, torch.Generator().manual_seed(0), labels)
    dropped = (batch_tokens == data.empty_tokens).all(dim=1)
    assert 10 < dropped.sum() < 80  # about a tenth
    for row in range(400):
        scene = scenes[int(latents[row])]
        if dropped[row]:
            assert named["place"][row] == named["shape"][row] == UNNAMED
        else:
            assert POSITIONS[named["place"][row]] == scene.objects[0].position
            assert SHAPES[named["shape"][row]] == scene.objects[0].shape
