"""Learning-rate schedules as pure functions of the epoch, so every path uses the same numbers."""

from __future__ import annotations

import math

from hpo.config import TrainConfig


def lr_at(config: TrainConfig, epoch: int) -> float:
    """The learning rate used throughout ``epoch`` (0-based)."""
    lr0, gamma, every = config.lr, config.gamma, config.step_every
    if config.schedule == "tutorial":
        # The decay fires at the start of epochs 0, k, 2k, ...: one more decay than StepLR.
        return lr0 * gamma ** (epoch // every + 1)
    if config.schedule == "step":
        return lr0 * gamma ** (epoch // every)
    if config.schedule == "exponential":
        return lr0 * gamma**epoch
    if config.schedule == "cosine":
        return lr0 * 0.5 * (1 + math.cos(math.pi * epoch / config.epochs))
    return lr0


def lr_curve(config: TrainConfig) -> list[float]:
    return [lr_at(config, e) for e in range(config.epochs)]
