"""The fixed validation split, the tutorial's normalisation, and the device-resident tensors that
training reads."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from hpo.data import MnistArrays


def split_indices(n: int, val_size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed, seeded split of range(n): (train_idx, val_idx), sorted, disjoint, covering."""
    if not 0 <= val_size <= n:
        raise ValueError(f"val_size must be in 0..{n}, got {val_size}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[val_size:].sort().values, perm[:val_size].sort().values


def normalise(images_u8: torch.Tensor) -> torch.Tensor:
    """(N, 28, 28) uint8 -> (N, 784) float32, bit for bit the tutorial's transform.

    ``Compose([ToTensor(), Normalize([0.5], [0.5])])`` computes ``x.float().div(255)`` then
    ``sub_(0.5).div_(0.5)``: the same float32 ops in the same order. Run it on the CPU: CUDA
    divides by a scalar as a multiply by its reciprocal, and x * (1/255) differs from x / 255
    in the last bit for 126 of the 256 byte values.
    """
    return images_u8.float().div(255).sub(0.5).div(0.5).reshape(len(images_u8), -1)


@dataclass(frozen=True)
class Split:
    """Device-resident inputs x (N, 784) float32, normalised, and labels y (N,) int64."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return len(self.y)


@dataclass(frozen=True)
class TensorData:
    """A tuning run's data (``val``, no ``test``) or a final run's (``test``, no ``val``): a
    search cannot touch the test set, as it holds none."""

    train: Split
    val: Split | None
    test: Split | None


def tensor_data(
    arrays: MnistArrays, device: torch.device, *, val_size: int = 10_000, split_seed: int = 0
) -> TensorData:
    """Normalised once (on the CPU, see normalise) and moved to ``device`` once. val_size > 0
    holds out part of the official training set for tuning (and leaves the test set out); 0
    trains on all of it and evaluates on the test set."""

    def split(images: torch.Tensor, labels: torch.Tensor) -> Split:
        return Split(normalise(images).to(device), labels.to(device))

    images, labels = arrays.train_images, arrays.train_labels
    if val_size == 0:
        test = split(arrays.test_images, arrays.test_labels)
        return TensorData(split(images, labels), None, test)
    train_idx, val_idx = split_indices(len(labels), val_size, split_seed)
    val = split(images[val_idx], labels[val_idx])
    return TensorData(split(images[train_idx], labels[train_idx]), val, None)
