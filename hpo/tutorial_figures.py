"""The tutorial's two matplotlib figures: six test digits, and the training-loss curve."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never a window
import matplotlib.pyplot as plt
import torch


def save_digits(images: torch.Tensor, labels: torch.Tensor, path: Path) -> Path:
    """Six digits in a 2x3 grid titled ``Ground Truth: <label>``, axes hidden."""
    fig, axes = plt.subplots(2, 3, figsize=(6, 4.4))
    for ax, image, label in zip(axes.flat, images[:6], labels[:6], strict=False):
        ax.imshow(image.numpy(), cmap="gray", interpolation="none")
        ax.set_title(f"Ground Truth: {int(label)}")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def save_loss_curve(losses: Sequence[float], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(range(len(losses)), losses, marker="o", label="Train Loss")
    ax.set_title("Train Loss")
    ax.set_xlabel("Epoch")
    ax.set_ylabel("Loss")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
