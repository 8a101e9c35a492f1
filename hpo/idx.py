"""IDX, MNIST's file format: big-endian magic and sizes, then uint8 values."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import torch


def write_idx(path: Path, tensor: torch.Tensor) -> None:
    """Write images (N, rows, cols) or labels (N,), values 0..255, as IDX, atomically."""
    data = tensor.detach().cpu()
    if data.dim() not in (1, 3) or (data.numel() and (data.min() < 0 or data.max() > 255)):
        raise ValueError(f"IDX needs (N, rows, cols) or (N,) values in 0..255, got {data.shape}")
    header = np.array([2051 if data.dim() == 3 else 2049, *data.shape], dtype=">u4").tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.fchmod(fd, 0o644)  # mkstemp makes 0600; a shared cache must stay readable by others
    with os.fdopen(fd, "wb") as f:
        f.write(header)
        f.write(data.to(torch.uint8).numpy().tobytes())
    os.replace(tmp, path)  # readers see the old file or the whole new one, never a partial one
