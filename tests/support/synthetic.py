"""Small valid MNIST files for fast tests, and the digests that let hpo's verification accept
them (``expected=``): real MNIST is for the tests whose point is real data."""

from __future__ import annotations

from pathlib import Path

import torch

from hpo.data import MNIST_FILES, Digests, MnistArrays, file_md5, raw_dir
from hpo.idx import write_idx


def make_synthetic_mnist(data_dir: Path, n_train: int, n_test: int, seed: int) -> MnistArrays:
    """Write small valid IDX files under raw_dir(data_dir); return what it wrote."""
    g = torch.Generator().manual_seed(seed)
    tensors = []
    for n in (n_train, n_test):
        tensors.append(torch.randint(0, 256, (n, 28, 28), generator=g, dtype=torch.uint8))
        tensors.append(torch.randint(0, 10, (n,), generator=g, dtype=torch.int64))
    for name, tensor in zip(MNIST_FILES, tensors, strict=True):
        write_idx(raw_dir(data_dir) / name, tensor)
    return MnistArrays(*tensors)


def file_digests(folder: Path) -> Digests:
    """(bytes, md5) of the four files in ``folder``: the ``expected`` for files a test wrote."""
    return {name: ((folder / name).stat().st_size, file_md5(folder / name)) for name in MNIST_FILES}
