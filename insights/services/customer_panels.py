"""The Customers page's panels beyond `compute_customers` (DOMAIN §8): the stage strip (also on
the board), loyalty through time, the funnel per segment or channel, the filters' choices, and
the §5 test behind each figure that has one ("Make this an assumption").

Each panel is a fixed number of statements, whatever the number of periods: the strip is read
from the period figures; loyalty is one statement per metric through the history engine
(`measure_series` at every period end); the funnel one per segment shown (at most
SIDE_BY_SIDE of them).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, cast

from django.core.cache import cache

from planning.models import PROPORTION_METRICS, Assumption, Metric, Period, Plan

from ..metrics import (
    Measurement,
    MetricError,
    Scope,
    first_event_at,
    latest_event_at,
    measure_series,
)
from ..metrics.sql import EVENTS, fetchall
from ..periods import last_moment, period_start
from .customers import (
    Frame,
    Funnel,
    PeriodFigures,
    Share,
    StageTypes,
    funnel,
    period_figures,
    stage_types,
)
from .history import history_ends
from .sources import SPARK_FRESH_SECONDS, freshness, plan_engine, spark_record

MISSING = object()

# The funnel side by side: the largest segments (or channels), at most this many.
SIDE_BY_SIDE = 4
CACHE_SECONDS = 7 * 24 * 3600  # keyed by data version: an old entry is never read again
# Bumped when what is cached (pickled dataclasses) changes shape: old entries are then unread.
CACHE_SHAPE = 1


def cache_scope(plan: Plan) -> str:
    """A plan's data in cache keys: its data version, and its creation moment, so that a plan
    created anew with the same id (a database reset, a test run) never reads another's; for a
    Spark source, also the interval its figures are kept for (`sources.freshness`)."""
    return f"{plan.pk}:{plan.data_version}:{plan.created_at.timestamp():.6f}{freshness(plan)}"


def remembered[T](plan: Plan, what: str, args: Any, compute: Callable[[], T]) -> T:
    """`compute()`, kept for a while where the plan's events live on a Spark cluster: each
    statement there costs a second or more, so a page's figures are read from the cluster once
    per SPARK_FRESH_SECONDS and filter, not at every look. Imported events answer in
    milliseconds and are always computed afresh."""
    if spark_record(plan) is None:
        return compute()
    digest = hashlib.sha256(repr(args).encode()).hexdigest()[:24]
    key = f"{what}:{CACHE_SHAPE}:{cache_scope(plan)}:{digest}"
    found = cache.get(key, MISSING)
    if found is not MISSING:
        return cast(T, found)
    value = compute()
    cache.set(key, value, SPARK_FRESH_SECONDS)
    return value


# --- periods in words --------------------------------------------------------------------------


def period_label(start: dt.date, period: str, *, short: bool = False) -> str:
    """“Oct 2026” for a month, “week of 19 Oct 2026” for an ISO week."""
    if period == Period.WEEK:
        return f"{start:%-d %b %Y}" if short else f"week of {start:%-d %b %Y}"
    return f"{start:%b %Y}"


def period_noun(period: str) -> str:
    return "week" if period == Period.WEEK else "month"


# --- what the filters offer --------------------------------------------------------------------


@dataclass(frozen=True)
class FilterOptions:
    """The plan's segments, channels and event types, each with its customers, largest first."""

    segments: list[tuple[str, int]] = field(default_factory=list)
    channels: list[tuple[str, int]] = field(default_factory=list)
    event_types: list[tuple[str, int]] = field(default_factory=list)

    def values(self, kind: str) -> list[str]:
        return [name for name, _ in getattr(self, kind)]

    def largest(self, kind: str, limit: int = SIDE_BY_SIDE) -> list[str]:
        return [name for name, _ in getattr(self, kind)[:limit]]


def filter_options(plan: Plan) -> FilterOptions:
    """One statement, cached per data version (only an import changes the answer)."""
    key = f"customer-options:{CACHE_SHAPE}:{cache_scope(plan)}"
    found = cache.get(key)
    if isinstance(found, FilterOptions):
        return found
    parts = " UNION ALL ".join(
        f"SELECT '{kind}', e.{column}, COUNT(DISTINCT e.customer_id) FROM {EVENTS} e "  # noqa: S608
        f"WHERE e.plan_id = %s AND e.{column} <> '' GROUP BY e.{column}"
        for kind, column in (
            ("segments", "segment"),
            ("channels", "channel"),
            ("types", "event_type"),
        )
    )
    grouped: dict[str, list[tuple[str, int]]] = {"segments": [], "channels": [], "types": []}
    for kind, name, customers in fetchall(parts, [plan.pk] * 3):
        grouped[kind].append((str(name), int(customers)))
    for rows in grouped.values():
        rows.sort(key=lambda row: (-row[1], row[0]))
    options = FilterOptions(grouped["segments"], grouped["channels"], grouped["types"])
    cache.set(key, options, CACHE_SECONDS)
    return options


# --- the stage strip ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Tile:
    """One stage in the last complete period: customers reached, their share of the active
    customers, the change against the period before, and every complete period's reach."""

    stage: str
    mapped: bool
    reached: Share | None  # None: no complete period yet
    previous: Share | None
    history: list[int]  # customers reached in each complete period, oldest first
    history_labels: list[str] = field(default_factory=list)  # those periods in words

    @property
    def change(self) -> int | None:
        if self.reached is None or self.previous is None:
            return None
        return self.reached.customers - self.previous.customers

    @property
    def change_points(self) -> float | None:
        """The change of the reach share, in percentage points."""
        if self.reached is None or self.previous is None:
            return None
        if self.reached.share is None or self.previous.share is None:
            return None
        return 100 * (self.reached.share - self.previous.share)

    @property
    def verdict(self) -> str:
        """ "up" or "down" when the change is beyond noise: the two periods' 95% intervals of
        the reach share do not overlap (a stricter test than a two-sample test at 5%: what it
        calls a change is one); "steady" when they overlap; "" when there is nothing to
        compare."""
        now, before = self.reached, self.previous
        if now is None or before is None or now.ci_low is None or before.ci_low is None:
            return ""
        assert now.ci_high is not None and before.ci_high is not None
        if now.ci_low > before.ci_high:
            return "up"
        if now.ci_high < before.ci_low:
            return "down"
        return "steady"

    @property
    def history_text(self) -> str:
        """The sparkline in words: its text alternative."""
        return "; ".join(
            f"{label}: {count:,}"
            for label, count in zip(self.history_labels, self.history, strict=False)
        )

    @property
    def sparkline(self) -> str:
        """The history as SVG polyline points in a 100 × 24 box (drawn by the template)."""
        return spark_points(self.history)

    @property
    def last_point(self) -> tuple[float, float] | None:
        points = self.sparkline.split()
        if not points:
            return None
        x, y = points[-1].split(",")
        return float(x), float(y)


@dataclass(frozen=True)
class Strip:
    period: str
    last: dt.date | None  # the last complete period's start
    before: dt.date | None
    tiles: list[Tile]
    has_data: bool
    # Why the figures could not be read (a plan's Spark cluster that does not answer), in words.
    error: str = ""

    @property
    def last_label(self) -> str:
        return period_label(self.last, self.period) if self.last else ""

    @property
    def before_label(self) -> str:
        return period_label(self.before, self.period) if self.before else ""

    @property
    def noun(self) -> str:
        return period_noun(self.period)


def spark_points(values: list[int], width: float = 100, height: float = 24) -> str:
    if not values:
        return ""
    top = max(values) or 1
    pad = 2
    step = (width - 2 * pad) / max(len(values) - 1, 1)
    return " ".join(
        f"{pad + i * step:.1f},{height - pad - (height - 2 * pad) * v / top:.1f}"
        for i, v in enumerate(values)
    )


def stage_strip(periods: list[PeriodFigures], stages: StageTypes, period: str) -> Strip:
    """The strip from the period figures: the partial period (if any) is left out, so a tile
    compares two whole periods."""
    complete = [p for p in periods if not p.partial]
    last = complete[-1] if complete else None
    before = complete[-2] if len(complete) > 1 else None
    tiles = [
        Tile(
            stage=name,
            mapped=bool(types),
            reached=last.stage_reach.get(name) if last else None,
            previous=before.stage_reach.get(name) if before else None,
            history=[p.stage_reach[name].customers for p in complete if name in p.stage_reach],
            history_labels=[period_label(p.start, period) for p in complete],
        )
        for name, types in stages
    ]
    return Strip(
        period=period,
        last=last.start if last else None,
        before=before.start if before else None,
        tiles=tiles,
        has_data=bool(periods),
    )


def board_strip(plan: Plan, *, wait: bool = True) -> Strip | None:
    """The strip at the head of the board: the plan's period, as of its latest event, no filter.
    One query for the stages and their event types; the figures are cached per data version,
    period and event map (a cache miss adds two statements: as_of and the period figures).
    Without `wait`, None where they would be read from a Spark cluster (not cached yet)."""
    stages = stage_types(plan.pk)
    digest = hashlib.sha256(json.dumps(stages).encode()).hexdigest()[:16]
    key = f"stage-strip:{CACHE_SHAPE}:{cache_scope(plan)}:{plan.period}:{digest}"
    found = cache.get(key)
    if isinstance(found, Strip):
        return found
    if not wait and spark_record(plan) is not None:
        return None  # the board asks for it apart (a cluster answers in seconds)
    try:
        with plan_engine(plan):
            as_of = latest_event_at(plan.pk)
            frame = Frame(Scope(plan.pk, as_of), plan.period) if as_of else None
            periods = period_figures(frame, stages) if frame else []
    except MetricError as error:  # the plan's cluster: the board says so and tries next time
        return Strip(plan.period, None, None, [], has_data=False, error=str(error))
    strip = stage_strip(periods, stages, plan.period)
    cache.set(key, strip, CACHE_SECONDS)
    return strip


def strip_context(plan: Plan, strip: Strip | None) -> dict[str, Any]:
    """What _stage_strip.html draws at the head of the board: the strip, or (None) that it is
    being read, which the board then asks for (insights:stage_strip)."""
    return {
        "plan": plan,
        "strip": strip,
        "rows": [{"tile": tile, "link": ""} for tile in strip.tiles] if strip else [],
        "on_board": True,
    }


# --- tests behind figures ("Make this an assumption") -------------------------------------------


def figure_test(
    metric: str,
    params: dict[str, Any],
    *,
    segment: str = "",
    channel: str = "",
    window_days: int | None = None,
    comparator: str = ">=",
    value: float | None = None,
) -> Assumption:
    """An unsaved assumption whose test measures a figure, its threshold the figure's value now
    (rounded as a person would type it: 23.4%, an NPS of 31)."""
    assumption = Assumption(
        metric=metric,
        params=params,
        comparator=comparator,
        segment=segment,
        channel=channel,
        window_days=window_days,
    )
    if value is not None:
        assumption.threshold = _rounded(metric, value)
    return assumption


def _rounded(metric: str, value: float) -> float:
    if metric in PROPORTION_METRICS:
        return round(value, 3)
    if metric in (Metric.NPS, Metric.ACTIVE_CUSTOMERS):
        return float(round(value))
    return round(value, 2)


def test_query(assumption: Assumption) -> dict[str, Any]:
    """The assumption form's initial values for this test (planning's new-assumption form
    reads them from its query string): the statement is the test in words."""
    query: dict[str, Any] = {
        "statement": assumption.test_sentence or assumption.get_metric_display(),
        "metric": assumption.metric,
        "comparator": assumption.comparator,
    }
    if assumption.threshold is not None:  # as typed: 4, not 4.0; 0.118, not 0.11799…
        query["threshold"] = format(Decimal(repr(assumption.threshold)).normalize(), "f")
    for name in ("segment", "channel"):
        if getattr(assumption, name):
            query[name] = getattr(assumption, name)
    if assumption.window_days:
        query["window_days"] = assumption.window_days
    for name, value in (assumption.params or {}).items():
        query[f"param_{name}"] = value
    return query


# --- loyalty through time ----------------------------------------------------------------------

REPEAT_WITHIN_DAYS = 30
LOYALTY_WINDOW_DAYS = 90
CHURN_INACTIVE_DAYS = 90
NPS_EVENT_TYPE = "survey"


@dataclass(frozen=True)
class LoyaltyPoint:
    at: dt.datetime  # the end of a period, or as_of
    start: dt.date  # the period's start
    partial: bool
    measurement: Measurement


@dataclass(frozen=True)
class Loyalty:
    """One §5 metric at the end of every period: its test (the same one an assumption made from
    it runs) and its points."""

    key: str
    label: str
    stage: str  # the stage its event type is mapped to, or "All stages"
    test: Assumption
    explanation: str
    points: list[LoyaltyPoint]
    error: str = ""

    @property
    def latest(self) -> LoyaltyPoint | None:
        return self.points[-1] if self.points else None

    def fmt(self, value: float | None) -> str:
        return self.test.format_value(value)


def loyalty_tests(
    event_type: str, segment: str, channel: str
) -> list[tuple[str, str, Assumption, str]]:
    """(key, label, test, explanation) of the loyalty figures, as §5 tests."""
    return [
        (
            "repeat",
            "Repeat rate",
            figure_test(
                Metric.REPEAT_RATE,
                {"event_type": event_type, "within_days": REPEAT_WITHIN_DAYS},
                segment=segment,
                channel=channel,
                window_days=LOYALTY_WINDOW_DAYS,
            ),
            f"New customers of the {LOYALTY_WINDOW_DAYS} days up to each moment (old enough to "
            f"have had {REPEAT_WITHIN_DAYS} days) who had another {event_type} event within "
            f"{REPEAT_WITHIN_DAYS} days of their first.",
        ),
        (
            "churn",
            "Churn rate",
            figure_test(
                Metric.CHURN_RATE,
                {"inactive_days": CHURN_INACTIVE_DAYS},
                segment=segment,
                channel=channel,
                comparator="<=",
            ),
            f"Customers seen before {CHURN_INACTIVE_DAYS} days ago with no event of any kind "
            "since.",
        ),
        (
            "nps",
            "Net Promoter Score",
            figure_test(
                Metric.NPS,
                {"event_type": NPS_EVENT_TYPE},
                segment=segment,
                channel=channel,
                window_days=LOYALTY_WINDOW_DAYS,
            ),
            f"Each customer's latest 0–10 {NPS_EVENT_TYPE} score of the last "
            f"{LOYALTY_WINDOW_DAYS} days: % promoters (9–10) − % detractors (0–6).",
        ),
    ]


def loyalty(
    plan: Plan,
    stages: StageTypes,
    *,
    as_of: dt.datetime,
    period: str,
    event_type: str,
    segment: str = "",
    channel: str = "",
) -> list[Loyalty]:
    """Repeat rate, churn and NPS at the end of every period up to as_of (and at as_of), each
    in one statement through the history engine; two more statements in all: none per period."""
    first = first_event_at(plan.pk, segment, channel)
    ends = history_ends(first, as_of, period) if first is not None and first <= as_of else []
    stage_of = {t: name for name, types in stages for t in types}
    out = []
    for key, label, test, explanation in loyalty_tests(event_type, segment, channel):
        typed = (test.params or {}).get("event_type")
        stage = stage_of.get(typed, "No stage") if typed else "All stages"
        points: list[LoyaltyPoint] = []
        error = ""
        if ends:
            try:
                measured = measure_series(test, plan.pk, ends)
            except MetricError as problem:
                error = str(problem)
            else:
                points = [
                    LoyaltyPoint(
                        at=at,
                        start=period_start(at, period),
                        partial=at != last_moment(period_start(at, period), period),
                        measurement=m,
                    )
                    for at, m in zip(ends, measured, strict=True)
                ]
        if points and points[-1].measurement.value is not None:
            test.threshold = _rounded(test.metric, points[-1].measurement.value)
        out.append(Loyalty(key, label, stage, test, explanation, points, error))
    return out


# --- the funnel side by side -------------------------------------------------------------------


@dataclass(frozen=True)
class SideFunnel:
    label: str  # "All customers", or the segment's (channel's) name
    value: str
    funnel: Funnel


def side_by_side(
    plan: Plan,
    stages: StageTypes,
    steps: list[str],
    *,
    by: str,
    values: list[str],
    as_of: dt.datetime,
    period: str,
    segment: str,
    channel: str,
    window_days: int,
    entry_from: dt.date | None,
    entry_to: dt.date | None,
) -> list[SideFunnel]:
    """The funnel of each of `values` of the segment (or channel): one statement each."""
    by_name = dict(stages)
    chosen = [(name, by_name[name]) for name in steps if name in by_name]
    out = []
    for value in values:
        scope = Scope(
            plan.pk,
            as_of,
            segment=value if by == "segment" else segment,
            channel=value if by == "channel" else channel,
        )
        out.append(
            SideFunnel(
                label=value,
                value=value,
                funnel=funnel(Frame(scope, period), chosen, window_days, entry_from, entry_to),
            )
        )
    return out
