"""IDX, MNIST's file format: big-endian magic and sizes, then uint8 values."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from hpo.files import replacing


def write_idx(path: Path, tensor: torch.Tensor) -> None:
    """Write images (N, rows, cols) or labels (N,), values 0..255, as IDX, atomically."""
    data = tensor.detach().cpu()
    if data.dim() not in (1, 3) or (data.numel() and (data.min() < 0 or data.max() > 255)):
        raise ValueError(f"IDX needs (N, rows, cols) or (N,) values in 0..255, got {data.shape}")
    header = np.array([2051 if data.dim() == 3 else 2049, *data.shape], dtype=">u4").tobytes()
    with replacing(path) as tmp, tmp.open("wb") as f:
        f.write(header)
        f.write(data.to(torch.uint8).numpy().tobytes())


DIMS = {2051: 3, 2049: 1}  # magic number -> dimensions: images (N, rows, cols), labels (N,)


def read_idx(path: Path) -> torch.Tensor:
    """Images as uint8 (N, rows, cols) or labels as int64 (N,), as torchvision's MNIST has them.

    Read here rather than through torchvision, whose import loads ``torch._dynamo`` (about 1 s),
    which a process that trains eagerly (MPS, ``--no-compile``) or only fetches data never uses."""
    raw = bytearray(path.read_bytes())
    magic = int.from_bytes(raw[:4], "big")
    if magic not in DIMS:
        raise ValueError(f"{path} is not an IDX file of MNIST images or labels (magic {magic})")
    dims = DIMS[magic]
    shape = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    offset = 4 + 4 * dims
    if len(raw) - offset != int(np.prod(shape)):
        raise ValueError(f"{path} holds {len(raw) - offset} values, its header says {shape}")
    values = torch.frombuffer(raw, dtype=torch.uint8, offset=offset).reshape(shape)
    return values if dims == 3 else values.to(torch.int64)
