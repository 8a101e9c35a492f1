"""An epoch's training steps in chunks: the unit a CUDA graph captures and replays.

Every epoch cuts its batches at the same places; only which samples fill them changes. So
chunks of up to ``CHUNK_STEPS`` consecutive batches of one length repeat: 50,000 samples in
batches of 64 are 12 chunks of 64 steps, one of 13 and a last step of 16, three distinct
chunks. Capturing those three instead of all 782 steps makes the capture about ten times
cheaper (a capture costs the host time of the steps it records, about one eager epoch), which a
study pays once per trial. Each chunk's steps read their batches from one static ``window`` of
indices, and before a chunk runs its part of the epoch's order is copied there on the device.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from hpo.cuda_graph import maybe_graph

CHUNK_STEPS = 64

Chunk = tuple[int, tuple[int, ...]]  # (where it starts in the epoch's order, each batch's length)


def chunk_plan(slices: list[tuple[int, int]], steps: int = CHUNK_STEPS) -> list[Chunk]:
    """Consecutive batches ``(start, stop)`` grouped into chunks of at most ``steps`` batches
    of one length."""
    plan: list[Chunk] = []
    for a, b in slices:
        if plan:
            start, lengths = plan[-1]
            if len(lengths) < steps and lengths[0] == b - a and start + sum(lengths) == a:
                plan[-1] = (start, (*lengths, b - a))
                continue
        plan.append((a, (b - a,)))
    return plan


class EpochSteps:
    """Runs one epoch's steps, chunk by chunk; on a GPU each distinct chunk is captured once as
    a CUDA graph and replayed (see ``hpo.cuda_graph``), elsewhere its steps simply run.

    ``step(idx)`` trains on the samples ``idx`` (a device tensor), updating its state in place.
    """

    def __init__(
        self,
        step: Callable[[torch.Tensor], None],
        slices: list[tuple[int, int]],
        size: int,
        device: torch.device,
        graph: bool | None,
        warm_up: Callable[[], None],
    ) -> None:
        self._step = step
        self._plan = [(start, lengths, sum(lengths)) for start, lengths in chunk_plan(slices)]
        self._order = torch.empty(size, dtype=torch.int64, device=device)
        self._window = torch.empty(max(total for *_, total in self._plan), dtype=torch.int64,
                                   device=device)  # fmt: skip
        chunks = {lengths: self._chunk(lengths) for _, lengths, _ in self._plan}
        self._runs, self.graphed, self.capture_seconds = maybe_graph(chunks, warm_up, device, graph)

    def _chunk(self, lengths: tuple[int, ...]) -> Callable[[], None]:
        def run() -> None:
            start = 0
            for length in lengths:
                self._step(self._window[start : start + length])
                start += length

        return run

    def run(self, order: torch.Tensor) -> None:
        """One epoch over the samples in ``order`` (a permutation, on any device)."""
        self._order.copy_(order)
        for start, lengths, total in self._plan:
            self._window[:total].copy_(self._order[start : start + total])
            self._runs[lengths]()
