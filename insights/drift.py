"""Early warning (DOMAIN §10): is an assumption's history drifting toward breaking its test?

Chosen: Page's one-sided CUSUM of standardised values, self-starting (each point is judged
against the points before the move under way), its last zero giving the period the move began.
Not a library: `ruptures`/`changepoint` segment a finished series offline; `river`'s
PageHinkley is a CUSUM around the running mean in raw units (its threshold knows no interval,
and it waits 30 points); none knows overlapping or cumulative windows, and each brings numpy in
for a dozen lines of arithmetic. Measured in bench/drift.py.

The noise: the points' intervals, rescaled by how far the series moves from one period to the
next (overlapping windows move less than their intervals say, business noise more); for counts
and totals, with no interval, the series' own; a cumulative history (no window: each point holds
the one before) is also judged by its period-to-period changes.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .periods import WEEK, period_start

# Points that are no evidence either way.
SKIPPED = {"insufficient_data", "error"}
# The first points are the reference the later ones are judged against; a history needs one
# more to be judged at all.
MIN_REFERENCE = 8
MIN_POINTS = MIN_REFERENCE + 1
# CUSUM allowance and decision limit (standard errors). h keeps a stable series under one false
# alarm per 100 periods, watching one direction or both (`between`); see bench/drift.py.
K = 0.5
LIMIT = {1: 3.5, 2: 4.0}
# A warning stays on while the CUSUM is above this share of the limit.
HOLD = 0.5
# The reference is the points before the move under way for its first FREEZE periods (times how
# much noisier than its intervals the series is, up to 4: a noisier series takes longer to tell);
# then it follows that far behind, so a level that stays becomes the new normal.
FREEZE = 10
# z for a 95% interval (DOMAIN §5); mean |z| of a standard normal.
Z95 = 1.96
MEAN_ABS = math.sqrt(2 / math.pi)
# Relative spread of a variance estimated from n changes by mean |z|: SPREAD / √n. Within BAND of
# those the intervals are believed; outside, the estimate is used, padded by one spread.
SPREAD = 1.51
BAND = 2.0
# Bounds on rescaling, so a flat or a wild series never divides by zero.
MAX_SCALE = 400.0
# A leading point this many standard errors from where the series settles is a window filling up.
WARM_UP = 5.0
# A step between two stretches of a count this many standard errors wide is a move, not noise.
DECISIVE = 6.0

DIRECTIONS = {">=": ("down",), "<=": ("up",), "between": ("down", "up")}
SIGN = {"down": -1.0, "up": 1.0}
MONTHS = (
    "January February March April May June July August September October November December"
).split()


@dataclass(frozen=True)
class Drift:
    since: dt.date  # first day of the period in which the drift began
    direction: str  # "down" or "up": the direction of the move (toward breaking)
    message: str  # one sentence a CMO understands

    def as_json(self) -> dict[str, str]:
        return {
            "since": self.since.isoformat(),
            "direction": self.direction,
            "message": self.message,
        }


def detect(
    points: Sequence[dict[str, Any]],
    *,
    comparator: str,
    low: float,
    high: float | None,
    label: str,
    fmt: Callable[[float | None], str],
    period: str,
) -> Drift | None:
    """The drift under way at the last of `points` (oldest first, one per period end), or None.

    None when the latest point is already broken (its status says more than a drift would), when
    fewer than MIN_POINTS points are evidence, or when nothing moves toward breaking. `between`
    watches both directions; which bound a move heads for is its direction, so `low` and `high`
    are not needed to tell it."""
    if not points or points[-1].get("status") == "broken":
        return None
    evidence = _settled(_evidence(points))
    if len(evidence) < MIN_POINTS:
        return None
    directions = DIRECTIONS.get(comparator, ())
    if not directions:
        return None
    noise = _noise(evidence)
    found = [
        (alarm, direction)
        for direction in directions
        for alarm in _alarms(evidence, noise, SIGN[direction], LIMIT[len(directions)])
    ]
    if not found:
        return None
    alarm, direction = max(found, key=lambda pair: pair[0].strength)
    since = period_start(evidence[alarm.begin].at, period)
    return Drift(since, direction, _message(evidence, alarm, direction, label, fmt, period, since))


# --- evidence -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Point:
    at: dt.datetime
    value: float
    se: float | None  # from the 95% interval; None for counts and totals
    n: int | None


def _evidence(points: Sequence[dict[str, Any]]) -> list[_Point]:
    kept = []
    for point in points:
        value = point.get("observed")
        if value is None or point.get("status") in SKIPPED or not math.isfinite(value):
            continue
        low, high = point.get("ci_low"), point.get("ci_high")
        se = (high - low) / (2 * Z95) if low is not None and high is not None else None
        kept.append(_Point(_moment(point["as_of"]), float(value), se, point.get("n")))
    return kept


def _moment(value: str | dt.datetime) -> dt.datetime:
    moment = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _settled(evidence: list[_Point]) -> list[_Point]:
    """Without the leading points far from where the series settles: a window still filling
    (the first months of a 90-day count) is not the level later points are judged by."""
    later = [p.value for p in evidence[len(evidence) // 3 :]]
    if len(later) < 3:
        return evidence
    centre, step = statistics.median(later), max(_step(later), _floor(later))
    skip = 0
    while skip < len(evidence) // 3:
        first = evidence[skip]
        if abs(first.value - centre) <= WARM_UP * max(first.se or 0.0, step):
            break
        skip += 1
    return evidence[skip:]


def _cumulative(evidence: Sequence[_Point]) -> bool:
    """Whether each point holds the one before (a history without a window): its sample, or
    for a count its value, never shrinks."""
    if all(p.n is not None for p in evidence):
        sizes = [float(p.n or 0) for p in evidence]
    elif all(p.se is None for p in evidence):
        sizes = [p.value for p in evidence]
    else:
        return False
    return sizes[-1] > sizes[0] and all(b >= a for a, b in itertools.pairwise(sizes))


# --- noise --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Noise:
    level: list[float]  # each point's standard error, long-run (how far a run of them strays)
    change: list[float]  # each period's change's standard error (into point i + 1)
    cumulative: bool
    martingale: bool  # a cumulative share or mean: its changes average 0 while nothing moves
    freeze: int  # periods the reference stays where the move found it


def _floor(values: Sequence[float]) -> float:
    """The smallest noise worth a standard error: a flat series is not infinitely precise."""
    return 1e-4 * statistics.fmean(abs(v) for v in values) + 1e-12


def _diffs(values: Sequence[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(values)]


def _step(values: Sequence[float]) -> float:
    """One period's fresh noise, from the mean absolute change (robust to a shift)."""
    return statistics.fmean(abs(d) for d in _diffs(values)) / (MEAN_ABS * math.sqrt(2))


def _spread(values: Sequence[float], step: float) -> float:
    """The values' standard deviation, or, when one step plainly splits them (by DECISIVE
    long-run standard errors), their deviation around it: a move the detector is looking for
    does not pass for noise, a wandering overlap does not pass for a move."""
    n = len(values)
    sums, squares = [0.0], [0.0]
    for value in values:
        sums.append(sums[-1] + value)
        squares.append(squares[-1] + value * value)

    def within(a: int, b: int) -> float:  # sum of squares around the mean of values[a:b]
        return squares[b] - squares[a] - (sums[b] - sums[a]) ** 2 / (b - a)

    split = min(range(2, n - 1), key=lambda s: within(0, s) + within(s, n))
    around = math.sqrt(max(within(0, split) + within(split, n), 0.0) / (n - 2))
    gap = abs(sums[split] / split - (sums[n] - sums[split]) / (n - split))
    long_run = around * max(around / step, 1.0)
    if gap > DECISIVE * long_run * math.sqrt(1 / split + 1 / (n - split)):
        return around
    return math.sqrt(max(within(0, n), 0.0) / (n - 1))


def _change_variance(se: Sequence[float], shared: float) -> list[float]:
    """var(x′ − x) when two successive points share `shared` × the smaller variance: 0 for
    independent points, the overlap for windows (⅔ for 90 days judged monthly), 1 for nested
    samples (a cumulative value), below 0 for noise beyond the intervals."""
    return [a * a + b * b - 2 * shared * min(a * a, b * b) for a, b in itertools.pairwise(se)]


def _fit(diffs: Sequence[float], se: Sequence[float], shared: float) -> float:
    """mean |change / its standard error| ÷ √(2/π): 1 when `shared` fits the series."""
    variances = _change_variance(se, shared)
    ratios = (abs(d) / math.sqrt(max(v, 1e-300)) for d, v in zip(diffs, variances, strict=True))
    return statistics.fmean(ratios) / MEAN_ABS


def _shared(diffs: Sequence[float], se: Sequence[float]) -> float:
    """The `shared` that fits the series' changes (bisection: the fit grows with it)."""
    low, high = 1 - MAX_SCALE, 1 - 1 / MAX_SCALE
    if _fit(diffs, se, low) >= 1:
        return low
    if _fit(diffs, se, high) <= 1:
        return high
    for _ in range(30):
        middle = (low + high) / 2
        low, high = (low, middle) if _fit(diffs, se, middle) > 1 else (middle, high)
    return (low + high) / 2


def _noise(evidence: Sequence[_Point]) -> _Noise:
    values = [p.value for p in evidence]
    floor = _floor(values)
    diffs = _diffs(values)
    cumulative = _cumulative(evidence)
    spread = SPREAD / math.sqrt(len(diffs))
    if all(p.se is not None for p in evidence):
        se = [max(p.se or 0.0, floor) for p in evidence]
        shared = _shared(diffs, se)
        # Within the estimate's own noise the intervals are believed: the points are
        # independent, or nested when each holds the one before.
        if cumulative and _fit(diffs, se, 1.0) ** 2 <= 1 + BAND * spread:
            shared, factor = 1.0, MAX_SCALE
        elif abs(shared) <= BAND * spread:
            shared, factor = 0.0, 1.0
        else:
            # w overlapping periods (shared = 1 − 1/w) stray w times as far together; noise
            # beyond the interval (shared < 0) adds to each point's. Padded by one spread.
            factor = 1 / max(1 - shared, 1 / MAX_SCALE) if shared > 0 else 1 - shared
            factor *= math.exp(spread)
        level = [s * math.sqrt(factor) for s in se]
        change = [math.sqrt(max(v, floor * floor)) for v in _change_variance(se, shared)]
        return _Noise(level, change, cumulative, martingale=True, freeze=_freeze(factor))
    # No interval (counts, totals): fresh noise from the changes, overall from the values;
    # both estimated, so padded by half a spread (a standard deviation's share).
    step = max(_step(values), floor)
    overall = _spread(values, step)
    overlap = min((overall / step) ** 2, MAX_SCALE)
    if overlap <= math.exp(BAND * spread):
        overlap, long_run = 1.0, max(step, overall)
    else:
        long_run = overall * math.sqrt(overlap)
    pad = math.exp(spread / 2)
    change = [step * pad * math.sqrt(2)] * len(diffs)
    return _Noise(
        [long_run * pad] * len(values),
        change,
        cumulative,
        martingale=False,
        freeze=_freeze(overlap),
    )


def _freeze(factor: float) -> int:
    return round(FREEZE * min(max(factor, 1.0), 4.0))


# --- the CUSUM ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Alarm:
    begin: int  # index (in the evidence) of the drift's first point
    strength: float  # the CUSUM over its limit, at the last point
    before: float  # the level it left, in the metric's units


def _alarms(evidence: Sequence[_Point], noise: _Noise, sign: float, limit: float) -> list[_Alarm]:
    values = [p.value for p in evidence]
    alarms = []
    found = _cusum(values, noise.level, sign, limit, noise.freeze)
    if found is not None:
        alarms.append(_Alarm(*found))
    if noise.cumulative:
        # A cumulative value barely moves: what each period adds is in its changes.
        steps = [(b - a) / s for a, b, s in zip(values, values[1:], noise.change, strict=False)]
        known = 0.0 if noise.martingale else None
        found = _cusum(steps, [1.0] * len(steps), sign, limit, FREEZE, known)
        if found is not None:
            begin, strength, _ = found
            # steps[i] is the change into point i + 1.
            alarms.append(_Alarm(begin + 1, strength, values[begin]))
    return alarms


def _cusum(
    values: Sequence[float],
    scales: Sequence[float],
    sign: float,
    limit: float,
    freeze: int,
    known: float | None = None,
) -> tuple[int, float, float] | None:
    """A one-sided CUSUM: (first index of the move under way, CUSUM / limit, the reference it
    left) when the move has crossed the limit and not fallen back under HOLD × limit, else None.

    Each value is compared with the inverse-variance mean of the values before the move (or,
    once the move is `freeze` periods old, before `freeze` periods ago), standardised by its own
    and that mean's standard error; or with `known`."""
    weights, sums = [0.0], [0.0]  # prefix sums: each reference mean in O(1)
    for value, scale in zip(values, scales, strict=True):
        weights.append(weights[-1] + 1 / (scale * scale))
        sums.append(sums[-1] + value / (scale * scale))
    begin: int | None = None
    total, on, before = 0.0, False, known or 0.0
    moved: list[float] = []  # z over the move under way
    for t in range(MIN_REFERENCE, len(values)):
        if known is None:
            end = t if begin is None else max(begin, t - freeze)
            reference, error = sums[end] / weights[end], 1 / weights[end]
        else:
            reference, error = known, 0.0
        z = sign * (values[t] - reference) / math.sqrt(scales[t] ** 2 + error)
        total += z - K
        if total <= 0:
            begin, total, on, moved = None, 0.0, False, []
            continue
        if begin is None:
            begin = t
        moved.append(z)
        on = total > limit or (on and total >= HOLD * limit)
    if not on or begin is None:
        return None
    start = begin + _onset(moved)
    if known is None:
        before = sums[start] / weights[start]  # the level it left: the points before it
    return start, total / limit, before


def _onset(moved: Sequence[float]) -> int:
    """Where in the move it began: the CUSUM's last zero is the likeliest start for a shift of
    2K; for a larger one, the start that best fits a shift the size of the move's (twice)."""
    start = 0
    for _ in range(2):
        half = max(K, statistics.fmean(moved[start:]) / 2)
        tails = list(itertools.accumulate(z - half for z in reversed(moved)))[::-1]
        start = max(range(len(moved)), key=lambda s: (tails[s], -s))
    return start


# --- words --------------------------------------------------------------------------------------


def _message(
    evidence: Sequence[_Point],
    alarm: _Alarm,
    direction: str,
    label: str,
    fmt: Callable[[float | None], str],
    period: str,
    since: dt.date,
) -> str:
    """“Repeat rate has been falling since August: 41.0% → 36.2%”: the level it left, then the
    latest value (or, should the latest have bounced back, the average since)."""
    latest = evidence[-1].value
    if SIGN[direction] * (latest - alarm.before) <= 0:
        latest = statistics.fmean(p.value for p in evidence[alarm.begin :])
    verb = "falling" if direction == "down" else "rising"
    spans_years = evidence[0].at.year != evidence[-1].at.year
    when = _when(since, period, spans_years)
    return f"{label} has been {verb} since {when}: {fmt(alarm.before)} → {fmt(latest)}"


def _when(since: dt.date, period: str, spans_years: bool) -> str:
    year = f" {since.year}" if spans_years else ""
    if period == WEEK:
        return f"the week of {since.day} {MONTHS[since.month - 1][:3]}{year}"
    return f"{MONTHS[since.month - 1]}{year}"
