"""The early-warning detector (`insights.drift`) against its measured properties (DOMAIN §10), by
simulation. Each series is judged as its history would be at every period end (the detector sees
every prefix). Printed per series kind:
- false alarms: times the warning comes on per 100 periods of a stable series, watching one
  direction (≥) or both (between), over 100-period series and over 36-period ones (three years
  of months: the early periods, judged against few points, are the hardest); and the share of
  stable periods with the warning on;
- a sustained shift at period 24: the mean and median delay (1 = found at the first shifted
  point), the share found within 40 periods, and how often the period it began is right
  within two; for ≥ (a fall) and for between (a rise).

Series kinds, all monthly but the last:
- independent: a share from ~1,000 fresh customers a period (Wilson intervals);
- 90-day / 180-day window: a share over the last 3 / 6 months (each point overlaps the last);
- cumulative: a share over every customer so far (a history without window_days);
- count, count 90-day window: no interval, the noise read from the series;
- overdispersed: independent, plus month-to-month business noise as large as the sampling noise;
- weekly 90-day window: 13 overlapping weeks per point.
A shift moves what each new period brings so that the point moves by one of its standard errors
(for the cumulative share: one standard error of a month's customers). Nothing is asserted.

    python -m bench drift        (make bench BENCH_ARGS=drift)

BENCH_DRIFT_RUNS sets the stable series per kind (default 100; four times as many shifted
ones), BENCH_DRIFT_SEED the seed. About 10 minutes on one core at the default.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from insights import drift

SHIFT_AT = 24  # periods of history before the shift
AFTER = 40  # periods watched after it
STABLE = 100  # periods of a stable series
HISTORY = 36  # periods of a typical history (three years of months)
P = 0.4


@dataclass(frozen=True)
class Kind:
    name: str
    period: str
    # (rng, periods, shift start or None, direction sign) -> points
    make: Callable[[random.Random, int, int | None, float], list[dict[str, Any]]]


def _ends(periods: int, period: str) -> list[str]:
    if period == "week":
        first = dt.date(2024, 1, 1)  # a Monday
        starts = [first + dt.timedelta(weeks=i) for i in range(periods + 1)]
    else:
        starts = [dt.date(2024 + (i // 12), i % 12 + 1, 1) for i in range(periods + 1)]
    moments = [
        dt.datetime.combine(s, dt.time(), tzinfo=dt.UTC) - dt.timedelta(microseconds=1)
        for s in starts[1:]
    ]
    return [m.isoformat() for m in moments]


def wilson(successes: float, n: float) -> tuple[float, float]:
    z = drift.Z95
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def share_series(
    batch: int, window: int | None, period: str = "month", extra: float = 0.0
) -> Callable[[random.Random, int, int | None, float], list[dict[str, Any]]]:
    """A share over the last `window` periods' customers (None: all so far), `batch` new
    customers a period; the shift moves the new customers' rate by one standard error of the
    point (of a batch, for the cumulative share). `extra`: business noise, in batch SEs."""
    per_point = batch * (window or 1)
    step = math.sqrt(P * (1 - P) / per_point)

    def make(rng: random.Random, periods: int, shift: int | None, sign: float):
        batches: list[tuple[float, int]] = []
        points = []
        for i, as_of in enumerate(_ends(periods, period)):
            rate = P + (sign * step if shift is not None and i >= shift else 0.0)
            rate += extra * math.sqrt(P * (1 - P) / batch) * rng.gauss(0, 1)
            size = max(1, round(rng.gauss(batch, math.sqrt(batch))))  # customers come and go
            mean, sd = size * rate, math.sqrt(size * rate * (1 - rate))
            batches.append((min(max(round(rng.gauss(mean, sd)), 0), size), size))
            kept = batches[-window:] if window else batches
            hits, n = sum(b[0] for b in kept), sum(b[1] for b in kept)
            low, high = wilson(hits, n)
            points.append(_point(as_of, hits / n, n, low, high))
        return points

    return make


def count_series(level: float, window: int) -> Callable[..., list[dict[str, Any]]]:
    """A count over the last `window` periods (Poisson-like), no interval; the shift moves it
    by one standard deviation of the point."""
    per_point_sd = math.sqrt(level * window)

    def make(rng: random.Random, periods: int, shift: int | None, sign: float):
        batches: list[float] = []
        points = []
        for i, as_of in enumerate(_ends(periods, "month")):
            mean = level + (sign * per_point_sd / window if shift is not None and i >= shift else 0)
            batches.append(round(rng.gauss(mean, math.sqrt(level))))
            points.append(_point(as_of, float(sum(batches[-window:])), None, None, None))
        return points

    return make


def _point(as_of: str, observed: float, n: int | None, low: float | None, high: float | None):
    return {
        "as_of": as_of,
        "observed": observed,
        "n": n,
        "ci_low": low,
        "ci_high": high,
        "status": "holds",
    }


KINDS = [
    Kind("independent", "month", share_series(1000, 1)),
    Kind("90-day window", "month", share_series(400, 3)),
    Kind("180-day window", "month", share_series(200, 6)),
    Kind("cumulative", "month", share_series(200, None)),
    Kind("count", "month", count_series(1000, 1)),
    Kind("count, 90-day window", "month", count_series(400, 3)),
    Kind("overdispersed", "month", share_series(1000, 1, extra=1.0)),
    Kind("weekly, 90-day window", "week", share_series(100, 13, period="week")),
]


def flags(points: list[dict[str, Any]], comparator: str, period: str) -> list[drift.Drift | None]:
    """The warning at every period end, as the history would show it then."""
    return [_detect(points[: t + 1], comparator, period) for t in range(len(points))]


@dataclass
class Alarms:
    onsets: int  # times the warning came on
    flagged: int  # periods it was on
    periods: int

    @property
    def per_100(self) -> float:
        return 100 * self.onsets / self.periods


def false_alarms(kind: Kind, comparator: str, length: int, runs: int, rng: random.Random) -> Alarms:
    """Warnings on stable series of `length` periods, judged at every period end."""
    result = Alarms(0, 0, runs * length)
    for _ in range(runs):
        points = kind.make(rng, length, None, 1.0)
        shown = [found is not None for found in flags(points, comparator, kind.period)]
        result.onsets += sum(1 for a, b in zip([False, *shown], shown, strict=False) if b and not a)
        result.flagged += sum(shown)
    return result


@dataclass
class Delays:
    delays: list[int]
    runs: int
    already: int  # a false alarm under way when the shift began
    since_right: int  # found, with the start period right within 2

    @property
    def found(self) -> float:
        return len(self.delays) / max(1, self.runs - self.already)


def _detect(points: list[dict[str, Any]], comparator: str, period: str) -> drift.Drift | None:
    return drift.detect(
        points,
        comparator=comparator,
        low=0.0,
        high=1e12,
        label="Rate",
        fmt=str,
        period=period,
    )


def delays(kind: Kind, comparator: str, direction: str, runs: int, rng: random.Random) -> Delays:
    """Periods until a shift at SHIFT_AT is found (1: at the first shifted point)."""
    sign = drift.SIGN[direction]
    result = Delays([], runs, 0, 0)
    for _ in range(runs):
        points = kind.make(rng, SHIFT_AT + AFTER, SHIFT_AT, sign)
        if _detect(points[:SHIFT_AT], comparator, kind.period) is not None:
            result.already += 1
            continue
        for t in range(SHIFT_AT, len(points)):
            found = _detect(points[: t + 1], comparator, kind.period)
            if found is not None and found.direction == direction:
                result.delays.append(t - SHIFT_AT + 1)
                began = drift.period_start(
                    dt.datetime.fromisoformat(points[SHIFT_AT]["as_of"]), kind.period
                )
                if abs(_periods_between(began, found.since, kind.period)) <= 2:
                    result.since_right += 1
                break
    return result


def _periods_between(first: dt.date, second: dt.date, period: str) -> int:
    if period == "week":
        return (second - first).days // 7
    return (second.year - first.year) * 12 + second.month - first.month


def _mean(values: list[int]) -> float:
    return statistics.fmean(values) if values else math.nan


def main() -> int:
    runs = int(os.environ.get("BENCH_DRIFT_RUNS", "100"))
    rng = random.Random(int(os.environ.get("BENCH_DRIFT_SEED", "20261201")))
    print(
        f"{runs} stable series of {STABLE} and of {HISTORY} periods, {runs * 4} shifted series, "
        "per kind. Targets (DOMAIN §10): ≤ 1 false alarm per 100 periods; a shift of one "
        "standard error found within 8 periods on average (1 = at the first shifted point)."
    )
    print(
        f"{'':24} {'false alarms per 100 periods':^31} {'stable':>7}   "
        f"{'shift at period ' + str(SHIFT_AT) + ': ≥ (down)':^31}  {'between (up)':^14}"
    )
    print(
        f"{'series':24} {'≥':>7}{'between':>8}{'≥ ' + str(HISTORY):>8}{'btw ' + str(HISTORY):>8} "
        f"{'flagged':>7}   {'delay':>6}{'median':>7}{'found':>7}{'start±2':>8}  "
        f"{'delay':>6}{'found':>7}"
    )
    started = time.perf_counter()
    for kind in KINDS:
        long_one = false_alarms(kind, ">=", STABLE, runs, rng)
        long_both = false_alarms(kind, "between", STABLE, runs, rng)
        short_one = false_alarms(kind, ">=", HISTORY, runs, rng)
        short_both = false_alarms(kind, "between", HISTORY, runs, rng)
        down = delays(kind, ">=", "down", runs * 4, rng)
        up = delays(kind, "between", "up", runs * 4, rng)
        median = statistics.median(down.delays) if down.delays else math.nan
        start_right = down.since_right / max(1, len(down.delays))
        print(
            f"{kind.name:24} {long_one.per_100:7.2f}{long_both.per_100:8.2f}"
            f"{short_one.per_100:8.2f}{short_both.per_100:8.2f} "
            f"{long_both.flagged / long_both.periods:7.1%}   "
            f"{_mean(down.delays):6.1f}{median:7.0f}{down.found:7.0%}{start_right:8.0%}  "
            f"{_mean(up.delays):6.1f}{up.found:7.0%}",
            flush=True,
        )
    print(
        f"(flagged: share of stable periods with the warning on, watching both directions; "
        f"found: within {AFTER} periods; {time.perf_counter() - started:.0f} s)"
    )
    return 0
