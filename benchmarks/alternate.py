"""Variants timed in turn, round by round, inside one pytest benchmark.

This machine's speed drifts by up to 2x within minutes (README, "Performance"), so two variants
timed in separate benchmarks, one block after the other, can differ by the drift alone. Here
each round runs every variant once, in the listed order and then reversed (A B, B A, A B, ...),
so that a slow phase or a steady drift falls on all of them alike; ``hpo bench-report`` divides
the variants round by round and reports the median of those ratios with their range.

The pytest benchmark times whole rounds; each variant's own times are stored in its
``extra_info["variants"]`` (``{name: {"round_s": [...], "extra_info": {...}}}``), under the
benchmark id it is reported as (``test_one_epoch[cpu-tensor]``), which hpo.bench_report expands
into a row per variant.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Variant:
    """``run`` is timed; ``prepare`` (a fresh study, say) runs untimed just before it."""

    name: str
    run: Callable[[], Any]
    prepare: Callable[[], None] = lambda: None
    extra_info: dict[str, Any] = field(default_factory=dict)
    round_s: list[float] = field(default_factory=list)
    results: list[Any] = field(default_factory=list)


def alternate(benchmark: Any, variants: Sequence[Variant], rounds: int) -> None:
    """``rounds`` rounds of ``variants`` (one round when timing is off: CI's smoke). Fill in a
    variant's ``extra_info`` afterwards from its ``results``: it is stored by reference."""
    names = [v.name for v in variants]
    if len(set(names)) != len(names):
        raise ValueError(f"variant names repeat: {names}")

    def one_round() -> None:
        reverse = len(variants[0].round_s) % 2 == 1
        for variant in reversed(variants) if reverse else variants:
            variant.prepare()
            began = time.perf_counter()
            variant.results.append(variant.run())
            variant.round_s.append(time.perf_counter() - began)

    benchmark.pedantic(one_round, rounds=rounds, iterations=1)
    benchmark.extra_info["variants"] = {
        v.name: {"round_s": v.round_s, "extra_info": v.extra_info} for v in variants
    }
