"""What every training script shares: a fixed seed, a time budget, and a state file to resume from after a stop."""

from __future__ import annotations

import argparse
import copy
import logging
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger("training")


def parse_args(description: str, *, steps: int, batch: int, lr: float, minutes: float) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--steps", type=int, default=steps, help=f"optimizer steps in all (default {steps})")
    parser.add_argument("--batch", type=int, default=batch, help=f"images per step (default {batch})")
    parser.add_argument("--lr", type=float, default=lr, help=f"learning rate (default {lr})")
    parser.add_argument(
        "--minutes", type=float, default=minutes, help=f"stop (resumably) after this long (default {minutes})"
    )
    parser.add_argument("--run", type=Path, help="folder of the resumable state (default training/runs/<name>)")
    parser.add_argument("--fresh", action="store_true", help="ignore a saved state and start again")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (default: all cores)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    return args


def device() -> torch.device:
    """Train on a GPU where there is one; the scripts are sized for two CPU cores."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class Ema:
    """An exponential moving average of a model's weights (what gets exported: smoother than the last step's)."""

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int) -> None:
        decay = min(self.decay, (1 + step) / (10 + step))  # warm-up: early weights are forgotten fast
        for ours, theirs in zip(self.model.parameters(), model.parameters(), strict=True):
            ours.lerp_(theirs.detach(), 1 - decay)


@dataclass
class RunState:
    """Models, optimizer, EMA and step, saved atomically every few minutes and at the end; loaded at start."""

    folder: Path
    modules: dict[str, torch.nn.Module]
    optimizer: torch.optim.Optimizer
    step: int = 0
    started: float = field(default_factory=time.monotonic)
    saved_at: float = field(default_factory=time.monotonic)
    seconds_before: float = 0.0  # training time of earlier sessions of this run

    @property
    def file(self) -> Path:
        return self.folder / "state.pt"

    def resume(self, fresh: bool) -> None:
        if fresh or not self.file.exists():
            log.info("starting %s from step 0", self.folder.name)
            return
        saved = torch.load(self.file, map_location="cpu", weights_only=False)  # our own file, written below
        for name, module in self.modules.items():
            module.load_state_dict(saved["modules"][name])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.step, self.seconds_before = saved["step"], saved["seconds"]
        random.setstate(saved["python_rng"])
        np.random.set_state(saved["numpy_rng"])
        torch.set_rng_state(saved["torch_rng"])
        minutes = self.seconds_before / 60
        log.info("resuming %s at step %d (%.0f min trained before)", self.folder.name, self.step, minutes)

    def seconds(self) -> float:
        return self.seconds_before + time.monotonic() - self.started

    def save(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        state = {
            "modules": {name: module.state_dict() for name, module in self.modules.items()},
            "optimizer": self.optimizer.state_dict(),
            "step": self.step,
            "seconds": self.seconds(),
            "python_rng": random.getstate(),
            "numpy_rng": np.random.get_state(),
            "torch_rng": torch.get_rng_state(),
        }
        tmp = self.file.with_suffix(".tmp")
        torch.save(state, tmp)
        tmp.replace(self.file)
        self.saved_at = time.monotonic()

    def tick(self, loss: float, every: int = 50, save_minutes: float = 2.0) -> None:
        """After each optimizer step: log now and then, save every few minutes."""
        self.step += 1
        if self.step % every == 0:
            log.info("%s step %d loss %.4f (%.1f min)", self.folder.name, self.step, loss, self.seconds() / 60)
        if time.monotonic() - self.saved_at > save_minutes * 60:
            self.save()
