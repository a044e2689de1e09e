"""Runs timed against each other: each one's best of several turns, taken in turns."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass
class Timing:
    """A run's best wall time of its turns, and its best CPU time in this thread (where SQLite
    runs; PostgreSQL works in its own process): on a busy machine the CPU time of an in-process
    database is the steadier figure."""

    wall: float = math.inf
    cpu: float = math.inf

    def add(self, wall: float, cpu: float) -> None:
        self.wall, self.cpu = min(self.wall, wall), min(self.cpu, cpu)


def best_of_each(*runs: Callable[[], Any], repeats: int) -> list[tuple[Timing, Any]]:
    """Each run's best times of `repeats`, taken in turns so that a busy moment of the machine
    falls on all of them alike; with each run's last result."""
    best = [Timing() for _ in runs]
    results: list[Any] = [None] * len(runs)
    for _ in range(repeats):
        for i, run in enumerate(runs):
            cpu, started = time.thread_time(), time.perf_counter()
            results[i] = run()
            best[i].add(time.perf_counter() - started, time.thread_time() - cpu)
    return list(zip(best, results, strict=True))
