"""The tutorial's network family: 784 -> h1 -> h2 -> 10 with BatchNorm and ReLU."""

from __future__ import annotations

import torch
from torch import nn

from hpo.config import Head, TrainConfig

# PyTorch's defaults, as the tutorial uses them; the hand-written step (fast_step) reads the same
# constants, so that a model it trained evaluates the same through this module.
BN_EPS = 1e-5
BN_MOMENTUM = 0.1


class Net(nn.Module):
    """``Net(784, 300, 100, 10)`` of the tutorial; ``head="softmax"`` keeps its double softmax."""

    def __init__(self, hidden1: int = 300, hidden2: int = 100, head: Head = "softmax") -> None:
        super().__init__()
        self.layer1 = nn.Sequential(nn.Linear(784, hidden1), _norm(hidden1), nn.ReLU())
        self.layer2 = nn.Sequential(nn.Linear(hidden1, hidden2), _norm(hidden2), nn.ReLU())
        self.layer3 = nn.Linear(hidden2, 10)
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.layer3(self.layer2(self.layer1(x.flatten(1))))
        # The tutorial feeds softmax output to CrossEntropyLoss, which log-softmaxes it again.
        return torch.softmax(z, dim=1) if self.head == "softmax" else z


def _norm(features: int) -> nn.BatchNorm1d:
    return nn.BatchNorm1d(features, eps=BN_EPS, momentum=BN_MOMENTUM)


def build_model(config: TrainConfig) -> Net:
    """A freshly initialised network; the same seed gives the same weights on every device."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return Net(config.hidden1, config.hidden2, config.head)


def parameter_count(hidden1: int, hidden2: int) -> int:
    linear = 784 * hidden1 + hidden1 + hidden1 * hidden2 + hidden2 + hidden2 * 10 + 10
    return linear + 2 * (hidden1 + hidden2)  # BatchNorm scale and shift
