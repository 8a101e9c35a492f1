"""The live progress line on stderr: redrawn in place on a terminal, one line per trial otherwise
(so logs and CI output stay readable). One display per ``hpo run``: with ``--jobs N`` the parent
draws it from what it reads in the storage, and the workers are silent."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
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
    best_value: float | None = None
    best_trial: int | None = None

    @property
    def finished(self) -> int:
        return self.complete + self.pruned


@dataclass(frozen=True)
class Running:
    """A trial in training, as the display shows it."""

    number: int
    epochs_done: int
    epochs: int
    elapsed: float  # seconds since it started
    at_last_epoch: float | None = None  # seconds from its start to its last epoch's end


@dataclass
class _Live:
    """A running trial as the display keeps it: its start on the display's clock."""

    start: float
    epochs_done: int
    epochs: int
    last: float  # when its last epoch ended (its start before the first), on the same clock


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
    """Told about the study by the search loop (or by the parent of ``--jobs`` workers, which
    reads it from the storage); silent when ``stream`` is None."""

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        tty: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
        workers: int = 1,
    ) -> None:
        self._stream = stream
        self._tty = stream is not None and (stream.isatty() if tty is None else tty)
        self._clock = clock
        self._start = clock()
        self._workers = max(1, workers)
        self._counts = Counts(0)
        self._running: dict[int, _Live] = {}  # by trial number
        self._durations: list[float] = []  # trials finished since the start
        self._drawn = False

    def start(self, counts: Counts) -> None:
        self._counts = counts
        text = f"{counts.finished} of {counts.target} trials finished at start"
        if counts.finished > counts.target:  # "4 of 2" reads as a miscount: say what it means
            text = (
                f"{counts.finished} trials finished at start, more than the {counts.target} "
                "asked for (--trials counts the study's total): nothing to run"
            )
        self._emit(text, line=True)

    def trial_started(self, number: int, epochs: int) -> None:
        now = self._clock()
        self._running = {number: _Live(now, 0, epochs, now)}
        self._redraw()

    def epoch(self, number: int, epoch: int) -> None:
        if number in self._running:
            self._running[number].epochs_done = epoch + 1
            self._running[number].last = self._clock()
        self._redraw()

    def running(self, trials: Sequence[Running]) -> None:
        """Replace the running trials with those read from the storage."""
        now = self._clock()
        self._running = {}
        for t in trials:
            start = now - t.elapsed
            # Not knowing when its last epoch ended, the pace takes the one under way in too.
            last = now if t.at_last_epoch is None else start + t.at_last_epoch
            self._running[t.number] = _Live(start, t.epochs_done, t.epochs, last)
        self._redraw()

    def trial_finished(
        self, number: int, outcome: str, counts: Counts, *, seconds: float | None = None
    ) -> None:
        """``seconds``: the trial's duration when known from elsewhere (the storage)."""
        started = self._running.pop(number, None)
        if seconds is None and started is not None:
            seconds = self._clock() - started.start
        if seconds is not None:
            self._durations.append(seconds)
        self._counts = counts
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
            f"waiting for running trial(s) {trials}: another worker's (one whose run was "
            f"killed on another machine is failed and re-queued after {grace_s} s without a "
            "heartbeat)",
            line=True,
        )

    def lost(self, numbers: list[int], dropped: list[int], why: str, max_reruns: int) -> None:
        """Trials failed as lost, for ``why`` (their heartbeat silent, their process ended);
        ``dropped``, those of them not queued again."""
        queued = [n for n in numbers if n not in dropped]
        said = f"{why} (their run was killed or crashed); failed"
        if queued:
            trials = ", ".join(f"#{n}" for n in queued)
            self._emit(
                f"trial(s) {trials} lost: {said}, and their parameters queued again (up to "
                f"{max_reruns} re-runs each)",
                line=True,
            )
        if dropped:
            trials = ", ".join(f"#{n}" for n in dropped)
            self._emit(
                f"trial(s) {trials} lost: {said}, and NOT queued again: their parameters have "
                f"had their {max_reruns} re-runs (a crash each time? see the worker's output). "
                "The next `hpo run` queues a lost baseline once more",
                line=True,
            )

    def close(self) -> None:
        if self._tty and self._drawn and self._stream is not None:
            self._stream.write("\n")
            self._stream.flush()
        self._drawn = False

    def remaining(self) -> float | None:
        """Seconds to the target: each running trial's last epochs at its own pace (pruning
        may cut them short), the trials not started yet at the mean trial's duration, shared
        by the workers; never less than the longest running trial has left, which no other
        worker can take on."""
        todo = self._counts.target - self._counts.finished
        if todo <= 0:
            return 0.0
        now = self._clock()
        live = list(self._running.values())
        # The running trials past their first epoch: seconds per epoch over the epochs they
        # finished, and what they have left, less how far into the next epoch they are.
        paced = [((t.last - t.start) / t.epochs_done, t) for t in live if t.epochs_done]
        if self._durations:
            per_trial = sum(self._durations) / len(self._durations)
        elif paced:
            per_trial = sum(pace * t.epochs for pace, t in paced) / len(paced)
        else:
            return None
        left = [max(0.0, pace * (t.epochs - t.epochs_done) - (now - t.last)) for pace, t in paced]
        # those still in their first epoch: the mean trial's time, less what they have run
        left += [max(0.0, per_trial - (now - t.start)) for t in live if not t.epochs_done]
        unstarted = max(0, todo - len(live)) * per_trial
        return max(max(left, default=0.0), (sum(left) + unstarted) / self._workers)

    def _line(self) -> str:
        running = ", ".join(
            f"#{n} epoch {t.epochs_done}/{t.epochs}" for n, t in sorted(self._running.items())
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
