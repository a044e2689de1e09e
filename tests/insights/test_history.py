"""Assumption history (DOMAIN §10, on §5's metrics and §8's periods), against a reference.

Every point of a history is checked against a plain-Python computation written here from the
domain's rules: the periods (UTC calendar months or ISO weeks) from the first one holding a kept
event, each period's last moment, the last point at as_of, and at each of them the §5 metric
(the plain-Python references of test_metrics) and its status. Edges get hand-built cases whose
dates and values are written out by hand.
"""

from __future__ import annotations

import datetime as dt
import functools
import io
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.models import F
from django.test.utils import CaptureQueriesContext

from insights.models import AssumptionHistory, Event, Import
from insights.services.history import compute_history
from insights.services.imports import create_import, run_import
from lifecycle.models import EventMapping, Stage
from lifecycle.services import map_event_types
from planning.models import Assumption, Plan, StrategicChoice
from planning.services import create_plan
from tests.insights.history_data import (
    EVENT_MAP,
    MICROSECOND,
    csv_bytes,
    generate,
    next_period,
    period_start,
)
from tests.insights.test_metrics import (
    Expected,
    Row,
    View,
    add,
    ref_active,
    ref_churn,
    ref_conversion,
    ref_mean,
    ref_nps,
    ref_repeat,
    ref_stage_reach,
    ref_total,
    store,
)

pytestmark = pytest.mark.django_db

UTC = dt.UTC
INSUFFICIENT, HOLDS, BROKEN, AT_RISK = "insufficient_data", "holds", "broken", "at_risk"
POINT_KEYS = {"as_of", "observed", "n", "ci_low", "ci_high", "status"}


# --- a test, as the reference sees it ------------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    """An assumption's test (DOMAIN §5). threshold None: picked from the reference's values."""

    metric: str
    params: dict[str, Any] = field(default_factory=dict)
    comparator: str = ">="
    threshold: float | tuple[float, float] | None = None
    min_sample: int = 30
    segment: str = ""
    channel: str = ""
    window_days: int | None = None


def measure(rows: list[Row], spec: Spec, as_of: dt.datetime, event_map: dict[str, str]) -> Expected:
    """The §5 metric at as_of, by the plain-Python references."""
    view = View(as_of, spec.segment or None, spec.channel or None, spec.window_days)
    p = spec.params
    match spec.metric:
        case "active_customers":
            return ref_active(rows, view, p.get("event_type"))
        case "repeat_rate":
            return ref_repeat(rows, view, p["event_type"], p["within_days"])
        case "conversion_rate":
            return ref_conversion(rows, view, p["from_event"], p["to_event"], p["within_days"])
        case "churn_rate":
            return ref_churn(rows, view, p["inactive_days"])
        case "stage_reach":
            stage = p["stage"].lower()
            types = {kind for kind, name in event_map.items() if name.lower() == stage}
            return ref_stage_reach(rows, view, types)
        case "mean_value":
            return ref_mean(rows, view, p["event_type"])
        case "total_value":
            return ref_total(rows, view, p["event_type"])
        case "nps":
            return ref_nps(rows, view, p.get("event_type", "survey"))
    raise AssertionError(spec.metric)


def status(spec: Spec, expected: Expected) -> str:
    """DOMAIN §5, Confidence and status: the verdict of one measurement."""
    value, n, low, high = expected
    if value is None or n == 0:
        return INSUFFICIENT
    if n is not None and (n < spec.min_sample or (spec.metric == "mean_value" and n < 2)):
        return INSUFFICIENT
    low = value if low is None else low  # counts and totals: the point value decides
    high = value if high is None else high
    if spec.comparator == "between":
        bottom, top = spec.threshold  # type: ignore[misc]
        holds, broken = bottom <= low and high <= top, high < bottom or low > top
    elif spec.comparator == ">=":
        holds, broken = low >= spec.threshold, high < spec.threshold  # type: ignore[operator]
    else:
        holds, broken = high <= spec.threshold, low > spec.threshold  # type: ignore[operator]
    return HOLDS if holds else BROKEN if broken else AT_RISK


def moments(rows: list[Row], spec: Spec, period: str) -> list[dt.datetime]:
    """DOMAIN §10: the last moment of every complete period from the first holding a kept event
    (segment and channel filters only), then as_of (the plan's latest event, before any filter)
    itself — once when it is a period's last moment."""
    as_of = max(r.at for r in rows)
    kept = View(as_of, spec.segment or None, spec.channel or None).kept(rows)
    assert kept, "the reference has no rule for a test that keeps no event"
    start = period_start(min(r.at for r in kept), period)
    ends = []
    while (end := next_period(start, period) - MICROSECOND) < as_of:
        ends.append(end)
        start = next_period(start, period)
    return [*ends, as_of]


def reference(
    rows: list[Row], spec: Spec, period: str = "month", event_map: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    points = []
    for at in moments(rows, spec, period):
        expected = measure(rows, spec, at, event_map or {})
        value, n, low, high = expected
        points.append(
            {
                "as_of": at.astimezone(UTC).isoformat(),
                "observed": value,
                "n": n,
                "ci_low": low,
                "ci_high": high,
                "status": status(spec, expected),
            }
        )
    return points


def with_threshold(spec: Spec, rows: list[Row], period: str, event_map=None) -> Spec:
    """The test with a threshold picked among the reference's values and interval bounds so that
    its statuses vary most along the history (holds, broken and at_risk where the data allows)."""
    if spec.threshold is not None:
        return spec
    measured = [
        measure(rows, spec, moment, event_map or {}) for moment in moments(rows, spec, period)
    ]
    bounds = sorted({round(x, 4) for m in measured for x in (m[0], m[2], m[3]) if x is not None})
    assert bounds, f"{spec}: no value anywhere"
    candidates: list[Any]
    if spec.comparator == "between":
        candidates = [
            (bounds[i], bounds[j])
            for i in range(0, len(bounds), max(1, len(bounds) // 12))
            for j in range(i, len(bounds), max(1, len(bounds) // 12))
        ]
    else:
        candidates = bounds[:: max(1, len(bounds) // 40)]

    def variety(threshold) -> tuple[int, int]:
        statuses = [status(replace(spec, threshold=threshold), m) for m in measured]
        decided = [s for s in statuses if s != INSUFFICIENT]
        return len(set(decided)), min((decided.count(s) for s in set(decided)), default=0)

    return replace(spec, threshold=max(candidates, key=variety))


# --- comparing the engine's points with the reference's ------------------------------------------


def _same_number(got: Any, want: float | None) -> bool:
    if want is None or got is None:
        return got is None and want is None
    return isinstance(got, int | float) and math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-12)


def differences(got: list[dict], want: list[dict]) -> list[str]:
    wrong = []
    if [p.get("as_of") for p in got] != [p["as_of"] for p in want]:
        wrong.append(
            f"as_of: engine {[p.get('as_of') for p in got]}\n  reference {[p['as_of'] for p in want]}"
        )
    for index, (g, w) in enumerate(zip(got, want, strict=False)):
        bad = [] if set(g) == POINT_KEYS else [f"keys {sorted(g)}"]
        bad += [k for k in ("observed", "ci_low", "ci_high") if not _same_number(g.get(k), w[k])]
        n = g.get("n")
        if not (n == w["n"] and (n is None or (isinstance(n, int) and not isinstance(n, bool)))):
            bad.append("n")
        if g.get("status") != w["status"]:
            bad.append("status")
        if bad:
            wrong.append(f"point {index} ({w['as_of']}) {bad}: engine {g} != reference {w}")
    return wrong


def check(history: AssumptionHistory, want: list[dict], label: str = "") -> None:
    assert history.status == AssumptionHistory.Status.READY, (label, history.message)
    wrong = differences(history.points, want)
    assert not wrong, f"{label}: {len(wrong)} differences\n" + "\n".join(wrong[:12])
    # What is stored reads back the same (JSON: ISO strings, plain numbers).
    stored = AssumptionHistory.objects.get(pk=history.pk).points
    assert stored == history.points


# --- plans, tests, data ---------------------------------------------------------------------------


@pytest.fixture
def choice(plan) -> StrategicChoice:
    return StrategicChoice.objects.create(plan=plan, title="Launch a loyalty subscription")


def make(choice: StrategicChoice, spec: Spec, statement: str | None = None, **extra) -> Assumption:
    threshold, high = (
        spec.threshold if isinstance(spec.threshold, tuple) else (spec.threshold, None)
    )
    return Assumption.objects.create(
        choice=choice,
        statement=statement or f"{spec.metric} {spec.params} {spec.comparator} {spec.threshold}",
        metric=spec.metric,
        params=spec.params,
        comparator=spec.comparator,
        threshold=threshold,
        threshold_high=high,
        min_sample=spec.min_sample,
        segment=spec.segment,
        channel=spec.channel,
        window_days=spec.window_days,
        **extra,
    )


def history_of(assumption: Assumption) -> AssumptionHistory:
    """The engine's history of the assumption as it is stored now (fresh from the database, so
    a plan changed by an update() is seen)."""
    return compute_history(Assumption.objects.get(pk=assumption.pk))


def set_period(plan: Plan, period: str) -> None:
    plan.period = period
    plan.save()


def map_events(plan: Plan, event_map: dict[str, str]) -> None:
    stages = {stage.name: stage for stage in plan.stages.all()}
    for kind, name in event_map.items():
        EventMapping.objects.create(plan=plan, event_type=kind, stage=stages[name])


def bump_data_version(plan: Plan) -> None:
    """What the import service does when events arrive (done by hand after bulk_create)."""
    Plan.objects.filter(pk=plan.pk).update(data_version=F("data_version") + 1)


def at(text: str) -> dt.datetime:
    value = dt.datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


# Two generated data sets: 17 months across two year ends with a month without any event,
# and 17 ISO weeks across the end of 2020 (which has a week 53) with an empty week.
MONTH_GAP = (at("2025-06-01"), at("2025-07-01"))
WEEK_GAP = (at("2020-11-23"), at("2020-11-30"))


@functools.cache
def month_rows() -> list[Row]:
    return generate(
        1997,
        at("2024-10-10T08:00"),
        at("2026-02-17T09:30"),
        gaps=[MONTH_GAP],
        last_zone=dt.timezone(dt.timedelta(hours=2)),
    )


@functools.cache
def week_rows() -> list[Row]:
    return generate(
        2020,
        at("2020-10-21T15:00"),
        at("2021-02-10T19:00"),
        period="week",
        customers=260,
        gaps=[WEEK_GAP],
        last_zone=dt.timezone(dt.timedelta(hours=-1)),
    )


ROWS = {"month": month_rows, "week": week_rows}

# Two tests per metric: filters, windows, comparators and sample sizes in several combinations.
SPECS: dict[str, list[Spec]] = {
    "active_customers": [
        Spec("active_customers", window_days=30),
        Spec("active_customers", {"event_type": "purchase"}, "<=", segment="smb"),
    ],
    "repeat_rate": [
        Spec("repeat_rate", {"event_type": "purchase", "within_days": 30}, min_sample=10),
        Spec(
            "repeat_rate",
            {"event_type": "purchase", "within_days": 7},
            "<=",
            min_sample=5,
            segment="smb",
            window_days=90,
        ),
    ],
    "conversion_rate": [
        Spec(
            "conversion_rate",
            {"from_event": "signup", "to_event": "purchase", "within_days": 14},
            min_sample=10,
        ),
        Spec(
            "conversion_rate",
            {"from_event": "visit", "to_event": "purchase", "within_days": 7},
            "between",
            min_sample=5,
            channel="web",
            window_days=60,
        ),
    ],
    "churn_rate": [
        # window_days is ignored by churn_rate (filters still apply)
        Spec("churn_rate", {"inactive_days": 60}, "<=", min_sample=10, window_days=30),
        Spec("churn_rate", {"inactive_days": 21}, min_sample=10, segment="enterprise"),
    ],
    "stage_reach": [
        Spec("stage_reach", {"stage": "Buy"}, min_sample=10, window_days=30),
        Spec("stage_reach", {"stage": "explore"}, "<=", min_sample=5, channel="store"),
    ],
    "mean_value": [
        Spec("mean_value", {"event_type": "purchase"}, min_sample=5, window_days=60),
        # a mean of one value is insufficient_data, whatever min_sample says
        Spec(
            "mean_value",
            {"event_type": "purchase"},
            min_sample=1,
            segment="consumer",
            window_days=7,
        ),
    ],
    "total_value": [
        Spec("total_value", {"event_type": "purchase"}, "<=", window_days=30),
        Spec("total_value", {"event_type": "survey"}, "between", segment="smb", channel="web"),
    ],
    "nps": [
        Spec("nps", {}, "between", min_sample=5, window_days=90),
        Spec("nps", {"event_type": "survey"}, min_sample=3, channel="web"),
    ],
}


# --- every metric, months and weeks, on generated data -------------------------------------------


@pytest.mark.parametrize("period", ["month", "week"])
@pytest.mark.parametrize("metric", list(SPECS))
def test_points_match_the_reference(plan, choice, period, metric):
    rows = ROWS[period]()
    store(plan, rows)
    set_period(plan, period)
    event_map = EVENT_MAP if metric == "stage_reach" else {}
    map_events(plan, event_map)
    statuses = set()
    for spec in SPECS[metric]:
        spec = with_threshold(spec, rows, period, event_map)
        want = reference(rows, spec, period, event_map)
        statuses |= {p["status"] for p in want}
        check(history_of(make(choice, spec)), want, f"{period} {spec}")
    # The data is rich enough for the comparison to mean something.
    assert len(statuses - {INSUFFICIENT}) >= 2, statuses


def test_the_generated_data_has_the_edges(plan):
    months, weeks = month_rows(), week_rows()
    # the empty month and week are inside the data, and get a point of their own
    for rows, (start, end), period in [(months, MONTH_GAP, "month"), (weeks, WEEK_GAP, "week")]:
        assert not [r for r in rows if start <= r.at < end]
        assert min(r.at for r in rows) < start and max(r.at for r in rows) > end
        points = [
            p["as_of"] for p in reference(rows, Spec("active_customers", threshold=1), period)
        ]
        assert (end - MICROSECOND).isoformat() in points
    # events on a period's first and last moment; moments written in other zones
    assert any(r.at == at("2025-01-01") for r in months)
    assert any(r.at == at("2024-12-31T23:59:59.999999") for r in months)
    assert any(r.at == at("2021-01-04") for r in weeks)  # Monday after ISO week 53
    assert any(r.at.utcoffset() for r in months) and any(r.at.utcoffset() for r in weeks)
    # the plan's latest event is in another zone: as_of is written in UTC
    spec = Spec("active_customers", threshold=1)
    assert reference(months, spec)[-1]["as_of"] == "2026-02-17T09:30:00+00:00"
    assert len(reference(months, spec)) == 17
    assert len(reference(weeks, spec, "week")) == 17


# --- edges, written out by hand ------------------------------------------------------------------


def test_months_from_the_first_kept_event_across_a_year_end_and_an_empty_month(plan, choice):
    rows = add(
        plan,
        # 1 November in Paris, still 31 October in UTC: October is the first period, though
        # this event is not of the test's type (any kept event starts the history)
        ("a", "2024-11-01T00:30:00+02:00", "visit"),
        ("b", "2024-11-15T10:00:00", "purchase", 10),
        ("c", "2024-11-30T23:59:59.999999", "purchase", 10),  # November's last moment
        ("d", "2024-12-01T00:00:00", "visit"),  # December's first
        ("e", "2024-12-20T12:00:00", "purchase", 10),
        # nothing at all in January
        ("f", "2025-02-10T12:00:00", "purchase", 10),
        ("g", "2025-03-10T08:00:00-01:00", "visit"),  # the plan's latest event: 09:00 UTC
    )
    spec = Spec("active_customers", {"event_type": "purchase"}, ">=", 2, window_days=31)
    history = history_of(make(choice, spec))
    assert [p["as_of"] for p in history.points] == [
        "2024-10-31T23:59:59.999999+00:00",
        "2024-11-30T23:59:59.999999+00:00",
        "2024-12-31T23:59:59.999999+00:00",
        "2025-01-31T23:59:59.999999+00:00",
        "2025-02-28T23:59:59.999999+00:00",
        "2025-03-10T09:00:00+00:00",
    ]
    # 31-day windows: (start, end]; c, on November's last moment, is not in December's window
    assert [p["observed"] for p in history.points] == [0, 2, 1, 0, 1, 1]
    assert [p["status"] for p in history.points] == [BROKEN, HOLDS, BROKEN, BROKEN, BROKEN, BROKEN]
    assert [p["n"] for p in history.points] == [None] * 6
    check(history, reference(rows, spec))


def test_iso_weeks_across_a_year_end_with_week_53_and_an_empty_week(plan, choice):
    set_period(plan, "week")
    rows = add(
        plan,
        # Sunday 20 December in the Azores, Monday 21 December 00:30 in UTC
        ("a", "2020-12-20T23:30:00-01:00", "visit"),
        ("b", "2020-12-27T23:59:59.999999", "visit"),  # Sunday's last moment
        ("c", "2020-12-28T00:00:00", "visit"),  # Monday of ISO week 53 of 2020
        ("d", "2021-01-01T12:00:00", "visit"),
        # nothing in the week of 4 January 2021
        ("e", "2021-01-12T12:00:00", "visit"),
        ("late", "2021-01-14T15:00:00+05:30", "visit"),  # Thursday 09:30 UTC
    )
    spec = Spec("active_customers", {}, ">=", 2, window_days=7)
    history = history_of(make(choice, spec))
    assert [p["as_of"] for p in history.points] == [
        "2020-12-27T23:59:59.999999+00:00",
        "2021-01-03T23:59:59.999999+00:00",
        "2021-01-10T23:59:59.999999+00:00",
        "2021-01-14T09:30:00+00:00",
    ]
    assert [p["observed"] for p in history.points] == [2, 2, 0, 2]
    assert [p["status"] for p in history.points] == [HOLDS, HOLDS, BROKEN, HOLDS]
    check(history, reference(rows, spec, "week"))


MONTH_ENDS = [
    "2025-01-31T23:59:59.999999+00:00",
    "2025-02-28T23:59:59.999999+00:00",
    "2025-03-31T23:59:59.999999+00:00",
]
WEEK_ENDS = [
    "2025-03-16T23:59:59.999999+00:00",
    "2025-03-23T23:59:59.999999+00:00",
    "2025-03-30T23:59:59.999999+00:00",
]


@pytest.mark.parametrize(
    ("period", "latest", "expected"),
    [
        # as_of exactly a period's last moment: that period's point is the last one, once
        ("month", "2025-04-01T01:59:59.999999+02:00", MONTH_ENDS),
        ("week", "2025-03-30T23:59:59.999999", WEEK_ENDS),
        # a microsecond later: a new, partial period with its own last point
        ("month", "2025-04-01T00:00:00", [*MONTH_ENDS, "2025-04-01T00:00:00+00:00"]),
        ("week", "2025-03-31T00:00:00", [*WEEK_ENDS, "2025-03-31T00:00:00+00:00"]),
    ],
)
def test_as_of_on_a_period_end_is_one_point(plan, choice, period, latest, expected):
    set_period(plan, period)
    first = "2025-01-15T10:00:00" if period == "month" else "2025-03-12T10:00:00"
    rows = add(
        plan,
        ("a", first, "purchase", 5),
        ("b", "2025-03-20T10:00:00", "purchase", 7),
        ("a", "2025-03-29T10:00:00", "purchase", 9),
        ("c", latest, "purchase", 11),
    )
    spec = Spec("total_value", {"event_type": "purchase"}, ">=", 10)
    history = history_of(make(choice, spec))
    assert [p["as_of"] for p in history.points] == expected
    assert history.points[-1]["observed"] == 32  # everything up to as_of, c's included
    check(history, reference(rows, spec, period))


@pytest.mark.parametrize(
    ("segment", "channel", "expected"),
    [
        (
            "smb",
            "",
            [
                "2025-02-28T23:59:59.999999+00:00",
                "2025-03-31T23:59:59.999999+00:00",
                "2025-04-30T23:59:59.999999+00:00",
                "2025-05-31T23:59:59.999999+00:00",
                "2025-06-15T12:00:00+00:00",
            ],
        ),
        ("", "app", ["2025-05-31T23:59:59.999999+00:00", "2025-06-15T12:00:00+00:00"]),
        (
            "smb",
            "store",
            [
                "2025-04-30T23:59:59.999999+00:00",
                "2025-05-31T23:59:59.999999+00:00",
                "2025-06-15T12:00:00+00:00",
            ],
        ),
    ],
)
def test_filters_start_the_history_at_the_first_kept_event(
    plan, choice, segment, channel, expected
):
    rows = add(
        plan,
        ("k1", "2025-01-05T10:00:00", "purchase", 1, "consumer", "web"),
        ("k2", "2025-01-20T10:00:00", "purchase", 2, "consumer", "store"),
        # 1 March in Paris, 28 February in UTC
        ("s1", "2025-03-01T01:00:00+02:00", "purchase", 3, "smb", "web"),
        ("s1", "2025-03-15T10:00:00", "purchase", 4, "smb", "web"),
        ("s2", "2025-04-10T10:00:00", "purchase", 5, "smb", "store"),
        ("k3", "2025-05-02T10:00:00", "purchase", 6, "consumer", "app"),
        # the plan's as_of comes from an event no filter keeps
        ("k1", "2025-06-15T12:00:00", "visit", None, "consumer", "store"),
    )
    spec = Spec(
        "total_value", {"event_type": "purchase"}, ">=", 4, segment=segment, channel=channel
    )
    history = history_of(make(choice, spec))
    assert [p["as_of"] for p in history.points] == expected
    check(history, reference(rows, spec))


def test_a_window_empties_the_points_of_a_quiet_month(plan, choice):
    rows = add(
        plan,
        *[(f"b{i}", f"2025-01-{10 + i}T10:00:00", "purchase", 10 + i) for i in range(6)],
        *[(f"b{i}", f"2025-01-{10 + i}T11:00:00", "survey", 9 if i < 4 else 3) for i in range(6)],
        # nothing in February or March
        ("late", "2025-04-02T10:00:00", "visit"),
    )
    specs = [
        Spec("mean_value", {"event_type": "purchase"}, ">=", 12, min_sample=5, window_days=28),
        Spec("nps", {}, ">=", 10, min_sample=5, window_days=28),
        Spec("active_customers", {}, ">=", 3, window_days=28),
        Spec("repeat_rate", {"event_type": "purchase", "within_days": 7}, ">=", 0.3, 5),
    ]
    for spec in specs:
        history = history_of(make(choice, spec))
        check(history, reference(rows, spec), str(spec))
        assert len(history.points) == 4
    # 28-day windows: January's point sees everything, February's and March's nothing
    mean = history_of(Assumption.objects.get(metric="mean_value"))
    assert [p["observed"] for p in mean.points] == [12.5, None, None, None]
    assert [p["n"] for p in mean.points] == [6, 0, 0, 0]
    assert [p["status"] for p in mean.points] == [AT_RISK, *[INSUFFICIENT] * 3]
    active = history_of(Assumption.objects.get(metric="active_customers"))
    assert [p["observed"] for p in active.points] == [6, 0, 0, 1]


# --- when the test, the data or the plan changes ------------------------------------------------


def test_a_changed_test_gets_a_new_history(plan, choice):
    rows = store(plan, month_rows())
    spec = Spec("repeat_rate", {"event_type": "purchase", "within_days": 30}, ">=", 0.2, 10)
    assumption = make(choice, spec)
    first = history_of(assumption)
    check(first, reference(rows, spec))

    # a new threshold changes statuses only
    assumption.threshold = 0.6
    assumption.save()
    changed = replace(spec, threshold=0.6)
    second = history_of(assumption)
    assert second.pk != first.pk
    check(second, reference(rows, changed))
    assert [p["status"] for p in second.points] != [p["status"] for p in first.points]

    # a segment filter changes values and the first period
    assumption.segment = "enterprise"
    assumption.params = {"event_type": "purchase", "within_days": 7}
    assumption.save()
    narrowed = replace(changed, segment="enterprise", params=assumption.params)
    third = history_of(assumption)
    assert third.pk not in {first.pk, second.pk}
    check(third, reference(rows, narrowed))

    # the first test again: its history is still the right one, and is reused
    assumption.threshold, assumption.segment, assumption.params = 0.2, "", spec.params
    assumption.save()
    again = history_of(assumption)
    assert again.pk == first.pk
    check(again, reference(rows, spec))


def test_events_added_before_the_first_period_add_earlier_points(plan, choice):
    rows = store(plan, generate(11, at("2025-03-05"), at("2025-09-20T16:00"), customers=120))
    spec = Spec(
        "conversion_rate",
        {"from_event": "signup", "to_event": "purchase", "within_days": 30},
        ">=",
        0.3,
        5,
    )
    assumption = make(choice, spec)
    before = history_of(assumption)
    check(before, reference(rows, spec))
    assert before.points[0]["as_of"] == "2025-03-31T23:59:59.999999+00:00"

    # the same customers, earlier: their first signups move, so later points change too
    past = store(plan, generate(12, at("2024-11-20"), at("2025-01-10"), customers=120))
    bump_data_version(plan)
    after = history_of(assumption)
    assert after.pk != before.pk
    everything = rows + past
    check(after, reference(everything, spec))
    assert after.points[0]["as_of"] == "2024-11-30T23:59:59.999999+00:00"
    assert len(after.points) == len(before.points) + 4
    assert after.points[4:] != before.points  # not the old points with new ones in front


def test_an_import_into_the_past_goes_through_the_import_service(plan, choice):
    rows = store(plan, generate(21, at("2025-05-02"), at("2025-10-03T07:00"), customers=100))
    spec = Spec("active_customers", {"event_type": "purchase"}, ">=", 20, window_days=45)
    assumption = make(choice, spec)
    before = history_of(assumption)
    check(before, reference(rows, spec))
    version = Plan.objects.get(pk=plan.pk).data_version

    past = generate(22, at("2025-01-12"), at("2025-04-20"), customers=100)
    record = create_import(plan, io.BytesIO(csv_bytes(past)), "past.csv")
    run_import(record.pk)
    record.refresh_from_db()
    assert record.status == Import.Status.SUCCEEDED, record.message
    assert record.rows_imported == len(past)
    assert Plan.objects.get(pk=plan.pk).data_version > version

    after = history_of(assumption)
    assert after.pk != before.pk
    check(after, reference(rows + past, spec))
    assert after.points[0]["as_of"] == "2025-01-31T23:59:59.999999+00:00"


def test_a_new_period_gets_a_new_history(plan, choice):
    rows = store(plan, month_rows())
    spec = Spec("churn_rate", {"inactive_days": 45}, "<=", 0.5, 10)
    assumption = make(choice, spec)
    monthly = history_of(assumption)
    check(monthly, reference(rows, spec, "month"))
    set_period(plan, "week")
    weekly = history_of(assumption)
    assert weekly.pk != monthly.pk
    check(weekly, reference(rows, spec, "week"))
    assert len(weekly.points) > 4 * len(monthly.points) - 8


def test_a_changed_event_map_gets_a_new_history(plan, choice):
    rows = store(plan, week_rows())
    map_events(plan, EVENT_MAP)
    spec = Spec("stage_reach", {"stage": "Ask"}, ">=", 0.1, 5, window_days=30)
    assumption = make(choice, spec)
    unmapped = history_of(assumption)
    check(unmapped, reference(rows, spec, event_map=EVENT_MAP))
    assert {p["observed"] for p in unmapped.points} <= {0.0, None}
    assert any(p["observed"] == 0.0 for p in unmapped.points)

    event_map = {**EVENT_MAP, "support_ticket": "Ask"}
    map_event_types(plan.pk, {"support_ticket": Stage.objects.get(plan=plan, name="Ask")})
    mapped = history_of(assumption)
    assert mapped.pk != unmapped.pk
    check(mapped, reference(rows, spec, event_map=event_map))


def test_another_plans_events_are_not_this_plans_data(plan, choice):
    rows = add(
        plan,
        ("a", "2025-01-10T10:00:00", "purchase", 5),
        ("b", "2025-02-10T10:00:00", "purchase", 6),
    )
    other = create_plan("Another plan", "another")
    add(other, ("z", "2024-06-01T10:00:00", "purchase", 1), ("z", "2025-09-01", "purchase", 2))
    spec = Spec("total_value", {"event_type": "purchase"}, ">=", 5)
    history = history_of(make(choice, spec))
    assert [p["as_of"] for p in history.points] == [
        "2025-01-31T23:59:59.999999+00:00",
        "2025-02-10T10:00:00+00:00",
    ]
    check(history, reference(rows, spec))


# --- stored once, computed in one pass -----------------------------------------------------------


def test_a_stored_history_is_reused_without_reading_events(plan, choice):
    rows = store(plan, month_rows())
    spec = Spec("nps", {}, ">=", 0, 10, window_days=60)
    assumption = make(choice, spec)
    first = history_of(assumption)
    check(first, reference(rows, spec))
    fresh = Assumption.objects.get(pk=assumption.pk)
    with CaptureQueriesContext(connection) as queries:
        again = compute_history(fresh)
    assert again.pk == first.pk
    assert again.computed_at == first.computed_at
    assert again.points == first.points
    statements = [q["sql"] for q in queries.captured_queries]
    assert not [s for s in statements if "insights_event" in s], statements
    assert not [s for s in statements if s.lstrip().upper().startswith(("INSERT", "UPDATE"))]
    assert len(statements) <= 6, statements
    assert AssumptionHistory.objects.filter(assumption=assumption).count() == 1


def _queries(call: Callable[[], Any]) -> tuple[int, int]:
    """How many statements a call runs, and how many of them read events. The one write that
    depends on the data, not on its length (the assumption takes its history's drift), is left
    out: a history drifts or not whatever its number of periods."""
    with CaptureQueriesContext(connection) as queries:
        call()
    statements = [q["sql"] for q in queries.captured_queries]
    drift = [s for s in statements if s.startswith('UPDATE "planning_assumption"')]
    assert len(drift) <= 1, drift
    return len(statements) - len(drift), sum("insights_event" in s for s in statements)


@pytest.mark.parametrize("period", ["month", "week"])
def test_queries_do_not_grow_with_the_number_of_periods(period):
    short = create_plan("Three months", "three-months", period=period)
    long = create_plan("Two years", "two-years", period=period)
    store(short, generate(31, at("2025-01-03"), at("2025-03-28T12:00"), customers=60))
    store(long, generate(32, at("2023-04-03"), at("2025-03-28T12:00"), customers=60))
    for plan in (short, long):
        map_events(plan, EVENT_MAP)
    choices = [StrategicChoice.objects.create(plan=p, title="Choice") for p in (short, long)]
    # a first computation, so that nothing cached by the process is counted below
    history_of(make(choices[0], Spec("active_customers", {}, ">=", 1), "warm-up"))
    counts = {}
    for metric, specs in SPECS.items():
        spec = replace(specs[0], threshold=(0.1, 0.5) if specs[0].comparator == "between" else 0.3)
        few, many = (make(c, spec) for c in choices)
        counts[metric] = (
            _queries(lambda a=few: history_of(a)),
            _queries(lambda a=many: history_of(a)),
        )
        assert len(history_of(many).points) >= (24 if period == "month" else 100)
    assert all(few == many for few, many in counts.values()), str(counts)
    # one pass per test, not a statement per period
    assert max(reads for _, (_, reads) in counts.values()) <= 3, str(counts)


# --- manage.py history SLUG --json ---------------------------------------------------------------


def test_the_history_command_prints_every_tested_assumption_in_plan_order(plan):
    rows = store(plan, month_rows())
    map_events(plan, EVENT_MAP)
    # created in the reverse of plan order
    later = StrategicChoice.objects.create(plan=plan, title="Grow organic visits", position=1)
    first = StrategicChoice.objects.create(
        plan=plan, title="Launch a loyalty subscription", position=0
    )
    specs = [
        (
            first,
            0,
            Spec("repeat_rate", {"event_type": "purchase", "within_days": 30}, ">=", 0.3, 10),
        ),
        (later, 0, Spec("stage_reach", {"stage": "Buy"}, ">=", 0.5, 10, window_days=30)),
        (
            first,
            1,
            Spec(
                "total_value", {"event_type": "purchase"}, "between", (1000, 5000), window_days=30
            ),
        ),
    ]
    made = [
        make(c, spec, f"Assumption {i}", position=position)
        for i, (c, position, spec) in reversed(list(enumerate(specs)))
    ]
    Assumption.objects.create(choice=first, statement="Members like the perks", position=2)

    out = io.StringIO()
    call_command("history", plan.slug, "--json", stdout=out)
    printed = json.loads(out.getvalue())

    order = [(first, specs[0][2], 0), (first, specs[2][2], 2), (later, specs[1][2], 1)]
    assert [item["statement"] for item in printed] == [f"Assumption {i}" for _, _, i in order]
    for item, (_, spec, _) in zip(printed, order, strict=True):
        assert set(item) == {"statement", "metric", "points", "drift"}
        assert item["metric"] == spec.metric
        wrong = differences(item["points"], reference(rows, spec, event_map=EVENT_MAP))
        assert not wrong, "\n".join(wrong[:12])
        assert item["drift"] is None or set(item["drift"]) == {"since", "direction", "message"}
    # what was missing was computed and stored; a second run prints the same from the store
    assert AssumptionHistory.objects.filter(status="ready").count() == len(made)
    again = io.StringIO()
    call_command("history", plan.slug, "--json", stdout=again)
    assert json.loads(again.getvalue()) == printed
    assert AssumptionHistory.objects.count() == len(made)
    assert Event.objects.filter(plan=plan).count() == len(rows)
