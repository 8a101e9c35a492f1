"""The tutorial's two matplotlib figures: six test digits, and the training-loss curve.

Drawn on ``Figure`` objects rather than pyplot: files only, no backend chosen for the whole
process (pyplot would need ``matplotlib.use("Agg")`` to never open a window)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from matplotlib.figure import Figure


def save_digits(images: torch.Tensor, labels: torch.Tensor, path: Path) -> Path:
    """Six digits in a 2x3 grid titled ``Ground Truth: <label>``, axes hidden."""
    fig = Figure(figsize=(6, 4.4))
    axes = fig.subplots(2, 3)
    for ax, image, label in zip(axes.flat, images[:6], labels[:6], strict=False):
        ax.imshow(image.numpy(), cmap="gray", interpolation="none")
        ax.set_title(f"Ground Truth: {int(label)}")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def save_loss_curve(losses: Sequence[float], path: Path) -> Path:
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    ax.plot(range(len(losses)), losses, marker="o", label="Train Loss")
    ax.set_title("Train Loss")
    ax.set_xlabel("Epoch")
    ax.set_ylabel("Loss")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path
