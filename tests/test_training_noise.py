"""The shapes trainers' noise: unit variance like Gaussian noise, but a latent's mean and coarse layout are hidden."""

from __future__ import annotations

import torch

from training.train_base import training_noise

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
