"""MNIST as one process holds it: the verified files, the fixed split, device copies on demand."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset, Subset

from hpo.data import MnistArrays, data_root, load_mnist
from hpo.splits import TensorData, split_indices, tensor_data

VAL_SIZE = 10_000


@dataclass
class Mnist:
    """Loaded once per process and shared by every run in it.

    ``tune`` runs train on the 50,000 images left after holding out a seeded 10,000-image
    validation split; ``full`` runs train on all 60,000 and are evaluated on the official test set.
    """

    data_dir: Path
    arrays: MnistArrays
    split_seed: int = 0
    val_size: int = VAL_SIZE
    _tensors: dict[tuple[str, bool], TensorData] = field(default_factory=dict, repr=False)

    @classmethod
    def load(
        cls,
        data_dir: Path | None = None,
        *,
        split_seed: int = 0,
        val_size: int = VAL_SIZE,
        download: bool = True,
        log: Callable[[str], None] = lambda _m: None,
        expected: dict[str, tuple[int, str]] | None = None,
    ) -> Mnist:
        # load_mnist verifies (once per process per folder) and fetches when allowed.
        arrays = load_mnist(data_dir, download=download, log=log, expected=expected)
        return cls(data_root(data_dir), arrays, split_seed, val_size)

    def tensors(self, device: torch.device, *, full: bool) -> TensorData:
        """Normalised tensors on ``device``; made once per device and split kind."""
        key = (str(device), full)
        if key not in self._tensors:
            val = 0 if full else self.val_size
            self._tensors[key] = tensor_data(
                self.arrays, device, val_size=val, split_seed=self.split_seed
            )
        return self._tensors[key]

    def indices(self, *, full: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        n = len(self.arrays.train_labels)
        if full:
            return torch.arange(n), None
        train_idx, val_idx = split_indices(n, self.val_size, self.split_seed)
        return train_idx, val_idx

    def torchvision_sets(self, *, full: bool) -> tuple[Subset[Any], Dataset[Any]]:
        """The tutorial's datasets (PIL images through ToTensor + Normalize) for the same split."""
        # Imported here: torchvision pulls in torch._dynamo (about 1 s), which only a compiled
        # run uses; the tensor path reads the IDX files itself (hpo.idx.read_idx).
        from torchvision import datasets, transforms

        tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize([0.5], [0.5])])
        root = str(self.data_dir)
        train_all = datasets.MNIST(root, train=True, transform=tf, download=False)
        train_idx, val_idx = self.indices(full=full)
        train = Subset(train_all, train_idx.tolist())
        if val_idx is None:
            return train, datasets.MNIST(root, train=False, transform=tf, download=False)
        return train, Subset(train_all, val_idx.tolist())
