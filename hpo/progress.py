"""The live progress line on stderr: redrawn in place on a terminal, one line per trial otherwise
(so logs and CI output stay readable)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO


@dataclass(frozen=True)
class Counts:
    """Where the study stands; ``finished`` (complete + pruned) is what ``--trials`` counts."""

    target: int
    complete: int = 0
    pruned: int = 0
    failed: int = 0
    running: int = 0
    waiting: int = 0
    best_value: float | None = None
    best_trial: int | None = None

    @property
    def finished(self) -> int:
        return self.complete + self.pruned


def clock_text(seconds: float) -> str:
    s = max(0, round(seconds))
    return (
        f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"
    )


def render(counts: Counts, running: str, elapsed: float, remaining: float | None) -> str:
    best = (
        f"best {counts.best_value:.4f} (#{counts.best_trial})"
        if counts.best_value is not None
        else "best -"
    )
    left = f", ~{clock_text(remaining)} left" if remaining is not None else ""
    parts = [
        f"trials {counts.finished}/{counts.target}",
        f"pruned {counts.pruned}",
        f"failed {counts.failed}",
        best,
    ]
    if running:
        parts.append(running)
    parts.append(f"{clock_text(elapsed)} elapsed{left}")
    return " | ".join(parts)


class Progress:
    """Told about the study by the search loop; silent when ``stream`` is None."""

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        tty: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream = stream
        self._tty = stream is not None and (stream.isatty() if tty is None else tty)
        self._clock = clock
        self._start = clock()
        self._counts = Counts(0)
        self._trial: int | None = None
        self._trial_start = 0.0
        self._epoch, self._epochs = 0, 0
        self._durations: list[float] = []  # trials finished by this process
        self._drawn = False

    def start(self, counts: Counts) -> None:
        self._counts = counts
        self._emit(f"{counts.finished} of {counts.target} trials finished at start", line=True)

    def trial_started(self, number: int, epochs: int, *, is_baseline: bool) -> None:
        self._trial, self._trial_start = number, self._clock()
        self._epoch, self._epochs = 0, epochs
        self._redraw()

    def epoch(self, number: int, epoch: int) -> None:
        self._epoch = epoch + 1
        self._redraw()

    def trial_finished(self, number: int, outcome: str, counts: Counts) -> None:
        if self._trial == number:
            self._durations.append(self._clock() - self._trial_start)
        self._trial, self._counts = None, counts
        if not self._tty:
            self._emit(f"trial {number} {outcome} | {self._line()}", line=True)
            return
        if outcome.startswith("failed"):  # on a terminal only failures stay on screen
            self._emit(f"trial {number} {outcome}", line=True)
        self._redraw()

    def waiting(self, numbers: list[int], grace_s: int, counts: Counts) -> None:
        self._counts = counts
        trials = ", ".join(f"#{n}" for n in numbers)
        self._emit(
            f"waiting for running trial(s) {trials}: another worker's, or a stopped "
            f"run's (failed and re-queued after {grace_s} s without a heartbeat)",
            line=True,
        )

    def close(self) -> None:
        if self._tty and self._drawn and self._stream is not None:
            self._stream.write("\n")
            self._stream.flush()
        self._drawn = False

    def remaining(self) -> float | None:
        todo = self._counts.target - self._counts.finished
        if todo <= 0:
            return 0.0
        now = self._clock()
        if self._durations:
            per_trial = sum(self._durations) / len(self._durations)
        elif self._trial is not None and self._epoch:
            per_trial = (now - self._trial_start) / self._epoch * self._epochs
        else:
            return None
        current = now - self._trial_start if self._trial is not None else 0.0
        return max(0.0, todo * per_trial - current)

    def _line(self) -> str:
        running = (
            f"#{self._trial} epoch {self._epoch}/{self._epochs}" if self._trial is not None else ""
        )
        return render(self._counts, running, self._clock() - self._start, self.remaining())

    def _redraw(self) -> None:
        if self._tty:
            self._emit(self._line(), line=False)

    def _emit(self, text: str, *, line: bool) -> None:
        if self._stream is None:
            return
        if self._tty:
            # \r + erase-to-end redraws the one status line; a full line first clears it.
            self._stream.write(f"\r{text}\x1b[K" + ("\n" if line else ""))
            self._drawn = not line
        else:
            self._stream.write(text + "\n")
        self._stream.flush()
