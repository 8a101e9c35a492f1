"""Shared fixtures: tiny synthetic MNIST (fast), written once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from hpo.data import raw_dir
from hpo.mnist import Mnist
from tests.support.synthetic import file_digests, make_synthetic_mnist

SYNTHETIC_TRAIN = 1_200
SYNTHETIC_TEST = 300
SYNTHETIC_VAL = 200


@pytest.fixture(scope="session")
def synthetic_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synthetic-mnist")
    make_synthetic_mnist(root, SYNTHETIC_TRAIN, SYNTHETIC_TEST, seed=1)
    return root


@pytest.fixture(scope="session")
def synthetic_digests(synthetic_dir: Path) -> dict[str, tuple[int, str]]:
    return file_digests(raw_dir(synthetic_dir))


@pytest.fixture(scope="session")
def synthetic_mnist(synthetic_dir: Path, synthetic_digests: dict[str, tuple[int, str]]) -> Mnist:
    return Mnist.load(
        synthetic_dir, val_size=SYNTHETIC_VAL, download=False, expected=synthetic_digests
    )
