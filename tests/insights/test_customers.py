"""The Customers figures (DOMAIN §8), against a reference, on whichever database the run uses.

Every figure is checked against a plain-Python computation written here from §8 alone (periods,
composition, stage reach, cohort retention, the funnel; Wilson intervals from §5): first on
generated data (months and ISO weeks across a year end, an empty period, filters, as_of inside
a period, on a period's first and last moment), then on small hand-built cases whose numbers
are written out by hand (resurrecting customers, funnel steps at the window's edge, a later
stage reached before an earlier one). The statements do not grow with the number of periods or
cohorts, and `manage.py customers --json` prints §8's keys exactly.
"""

from __future__ import annotations

import datetime as dt
import functools
import io
import json
import math
from collections import defaultdict
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test.utils import CaptureQueriesContext

from insights.metrics.sql import fetchall
from insights.services.customers import (
    CustomerFigures,
    CustomersError,
    compute_customers,
    index_start,
    period_key,
)
from lifecycle.models import EventMapping
from planning.models import Plan
from planning.services import create_plan
from tests.insights.history_data import generate
from tests.insights.test_metrics import Row, add, store

pytestmark = pytest.mark.django_db

UTC = dt.UTC
MICROSECOND = dt.timedelta(microseconds=1)
Z = 1.96
STAGES = ["Discover", "Explore", "Buy", "Use", "Ask", "Engage"]  # create_plan's, in order
# Discover and Engage have no event type: they are in stage_reach, not in the default funnel.
EVENT_MAP = {
    "visit": "Explore",
    "signup": "Buy",
    "purchase": "Buy",
    "login": "Use",
    "support_ticket": "Ask",
}


def at(text: str) -> dt.datetime:
    value = dt.datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


# --- the reference: DOMAIN §8 in plain Python ------------------------------------------------------


def ref_period(moment: dt.datetime, period: str) -> dt.date:
    """The UTC calendar month or ISO week (Monday to Sunday) holding a moment: its first day."""
    day = moment.astimezone(UTC).date()
    if period == "week":
        return day - dt.timedelta(days=day.isoweekday() - 1)
    return dt.date(day.year, day.month, 1)


def ref_next(start: dt.date, period: str) -> dt.date:
    if period == "week":
        return start + dt.timedelta(days=7)
    return dt.date(start.year + start.month // 12, start.month % 12 + 1, 1)


def ref_share(k: int, n: int) -> dict[str, Any]:
    """k of n with the 95% Wilson score interval (§5), none over no one."""
    if n == 0:
        return {"customers": k, "share": None, "ci_low": None, "ci_high": None}
    p = k / n
    middle = p + Z * Z / (2 * n)
    spread = Z * math.sqrt(p * (1 - p) / n + Z * Z / (4 * n * n))
    scale = 1 + Z * Z / n
    low, high = (middle - spread) / scale, (middle + spread) / scale
    return {"customers": k, "share": p, "ci_low": max(low, 0.0), "ci_high": min(high, 1.0)}


def reference(
    rows: list[Row],
    *,
    as_of: dt.datetime,
    period: str,
    event_map: dict[str, str],
    segment: str | None = None,
    channel: str | None = None,
    event_type: str = "purchase",
    funnel_stages: list[str] | None = None,
    window_days: int = 30,
    entry_from: dt.date | None = None,
    entry_to: dt.date | None = None,
) -> dict[str, Any]:
    """§8's JSON object, with each funnel step's interval and share of the step before added
    (`ci_low`, `ci_high`, `of_previous`)."""
    kept = [
        r
        for r in rows
        if r.at <= as_of
        and (segment is None or r.segment == segment)
        and (channel is None or r.channel == channel)
    ]
    last = ref_period(as_of, period)
    last_end = dt.datetime.combine(ref_next(last, period), dt.time(), UTC) - MICROSECOND
    partial = as_of != last_end
    starts: list[dt.date] = []
    if kept:
        start = ref_period(min(r.at for r in kept), period)
        while start <= last:
            starts.append(start)
            start = ref_next(start, period)

    # Periods: composition and stage reach.
    active: dict[dt.date, set[str]] = defaultdict(set)
    in_stage: dict[tuple[dt.date, str], set[str]] = defaultdict(set)
    first_seen: dict[str, dt.datetime] = {}
    for r in kept:
        p = ref_period(r.at, period)
        active[p].add(r.customer)
        if r.type in event_map:
            in_stage[p, event_map[r.type]].add(r.customer)
        first_seen[r.customer] = min(first_seen.get(r.customer, r.at), r.at)
    periods = []
    for number, start in enumerate(starts):
        now = active[start]
        before = active[starts[number - 1]] if number else set()
        new = {c for c in now if ref_period(first_seen[c], period) == start}
        returning = now & before
        resurrecting = now - before - new
        assert len(new) + len(returning) + len(resurrecting) == len(now)
        periods.append(
            {
                "start": start.isoformat(),
                "partial": partial and start == last,
                "active": len(now),
                "new": len(new),
                "returning": len(returning),
                "resurrecting": len(resurrecting),
                "dormant": len(before - now),
                "stage_reach": {s: ref_share(len(in_stage[start, s]), len(now)) for s in STAGES},
            }
        )

    # Cohort retention for event_type.
    typed: dict[str, list[dt.datetime]] = defaultdict(list)
    for r in kept:
        if r.type == event_type:
            typed[r.customer].append(r.at)
    cohort_of = {c: ref_period(min(times), period) for c, times in typed.items()}
    cohorts = []
    for cohort in sorted(set(cohort_of.values())):
        members = [c for c, start in cohort_of.items() if start == cohort]
        retention = []
        target, k = ref_next(cohort, period), 1
        while target <= last:
            back = [c for c in members if any(ref_period(t, period) == target for t in typed[c])]
            cell = ref_share(len(back), len(members))
            retention.append({"k": k, **cell, "partial": partial and target == last})
            target, k = ref_next(target, period), k + 1
        cohorts.append({"start": cohort.isoformat(), "size": len(members), "retention": retention})

    # The funnel.
    if funnel_stages is None:
        funnel_stages = [s for s in STAGES if s in event_map.values()]
    window = dt.timedelta(hours=24 * window_days)
    by_customer: dict[str, list[Row]] = defaultdict(list)
    for r in kept:
        by_customer[r.customer].append(r)
    reached = [0] * len(funnel_stages)
    for events in by_customer.values():
        s1 = [r.at for r in events if event_map.get(r.type) == funnel_stages[0]]
        if not s1:
            continue
        t1 = min(s1)
        entry = ref_period(t1, period)
        if t1 > as_of - dt.timedelta(days=window_days):
            continue
        if entry_from is not None and entry < ref_period(at(entry_from.isoformat()), period):
            continue
        if entry_to is not None and entry > ref_period(at(entry_to.isoformat()), period):
            continue
        reached[0] += 1
        previous = t1
        for number, stage in enumerate(funnel_stages[1:], start=1):
            hits = [
                r.at
                for r in events
                if event_map.get(r.type) == stage and previous <= r.at <= t1 + window
            ]
            if not hits:
                break
            previous = min(hits)
            reached[number] += 1
    entrants = reached[0]
    steps = []
    for number, stage in enumerate(funnel_stages):
        step = ref_share(reached[number], entrants)
        previous_step = reached[number - 1] if number else entrants
        steps.append(
            {
                "stage": stage,
                "customers": reached[number],
                "share": step["share"],
                "ci_low": step["ci_low"],
                "ci_high": step["ci_high"],
                "of_previous": ref_share(reached[number], previous_step)["share"],
            }
        )
    return {
        "as_of": as_of.astimezone(UTC).isoformat(),
        "period": period,
        "event_type": event_type,
        "periods": periods,
        "cohorts": cohorts,
        "funnel": {"window_days": window_days, "entrants": entrants, "steps": steps},
    }


# --- comparing -------------------------------------------------------------------------------------


def observed(figures: CustomerFigures) -> dict[str, Any]:
    """The figures as §8's object, with the funnel steps' intervals added as the reference has."""
    out = figures.as_json()
    assert figures.funnel is not None
    for step, full in zip(out["funnel"]["steps"], figures.funnel.steps, strict=True):
        step["ci_low"], step["ci_high"] = full.reached.ci_low, full.reached.ci_high
        step["of_previous"] = full.of_previous.share
    return out


def differences(got: Any, want: Any, path: str = "") -> list[str]:
    if isinstance(want, dict):
        if not isinstance(got, dict) or set(got) != set(want):
            return [
                f"{path}: keys {sorted(got) if isinstance(got, dict) else got} != {sorted(want)}"
            ]
        return [d for key in want for d in differences(got[key], want[key], f"{path}.{key}")]
    if isinstance(want, list):
        if not isinstance(got, list) or len(got) != len(want):
            return [f"{path}: {len(got) if isinstance(got, list) else got} items != {len(want)}"]
        return [
            d
            for i, (g, w) in enumerate(zip(got, want, strict=True))
            for d in differences(g, w, f"{path}[{i}]")
        ]
    if isinstance(want, float) and isinstance(got, float):
        return (
            []
            if math.isclose(got, want, rel_tol=1e-12, abs_tol=1e-12)
            else [f"{path}: {got} != {want}"]
        )
    if type(got) is not type(want) or got != want:
        return [f"{path}: {got!r} != {want!r}"]
    return []


def check(figures: CustomerFigures, want: dict[str, Any], label: str = "") -> None:
    found = differences(observed(figures), want)
    assert not found, f"{label}: {len(found)} differences, first: {found[:8]}"


def map_events(plan: Plan, event_map: dict[str, str] = EVENT_MAP) -> None:
    stages = {stage.name: stage for stage in plan.stages.all()}
    for kind, name in event_map.items():
        EventMapping.objects.create(plan=plan, event_type=kind, stage=stages[name])


# --- generated data ---------------------------------------------------------------------------------

# Months across the end of 2025 with an empty December; ISO weeks across the end of 2020 (which
# has a week 53) with an empty week.
MONTH_GAP = (at("2025-12-01"), at("2026-01-01"))
WEEK_GAP = (at("2020-12-14"), at("2020-12-21"))


@functools.cache
def month_rows() -> list[Row]:
    return generate(
        811,
        at("2025-06-10T08:00"),
        at("2026-04-17T09:30"),
        customers=260,
        gaps=[MONTH_GAP],
        last_zone=dt.timezone(dt.timedelta(hours=2)),
    )


@functools.cache
def week_rows() -> list[Row]:
    return generate(
        53,
        at("2020-11-02T15:00"),
        at("2021-01-27T19:00"),
        period="week",
        customers=260,
        gaps=[WEEK_GAP],
        last_zone=dt.timezone(dt.timedelta(hours=-1)),
    )


SCENARIOS: dict[str, dict[str, Any]] = {
    "month": {
        "rows": month_rows,
        # None: the latest event (inside April); inside January; February's last moment; the
        # first moment of March (a partial period of one instant).
        "as_of": [
            None,
            at("2026-01-17T13:00:00.5+01:00"),
            at("2026-02-28T23:59:59.999999"),
            at("2026-03-01T00:00:00"),
        ],
        "window_days": 30,
        "entry": (dt.date(2025, 9, 20), dt.date(2026, 1, 31)),
    },
    "week": {
        "rows": week_rows,
        # None: the latest event (a Wednesday); inside the week across the year end; the last
        # moment of the Sunday 2021-01-10; the first moment of Monday 2021-01-18.
        "as_of": [
            None,
            at("2020-12-31T22:00:00-05:00"),
            at("2021-01-10T23:59:59.999999"),
            at("2021-01-18T00:00:00"),
        ],
        "window_days": 7,
        "entry": (dt.date(2020, 11, 20), dt.date(2021, 1, 1)),
    },
}
FILTERS = [(None, None), ("smb", None), (None, "web"), ("enterprise", "store")]


@pytest.mark.parametrize("segment, channel", FILTERS)
@pytest.mark.parametrize("period", ["month", "week"])
def test_figures_match_the_reference(plan, period, segment, channel):
    scenario = SCENARIOS[period]
    rows = store(plan, scenario["rows"]())
    map_events(plan)
    latest = max(r.at for r in rows)
    window = scenario["window_days"]
    entry_from, entry_to = scenario["entry"]
    for as_of in scenario["as_of"]:
        kwargs = {"period": period, "segment": segment or "", "channel": channel or ""}
        ref_kwargs = {"period": period, "event_map": EVENT_MAP, "segment": segment}
        ref_kwargs["channel"] = channel
        label = f"{period} {segment}/{channel} as of {as_of}"
        when = as_of or latest
        figures = compute_customers(plan, as_of=as_of, window_days=window, **kwargs)
        check(figures, reference(rows, as_of=when, window_days=window, **ref_kwargs), label)
        # Another event type's cohorts; a funnel naming a later stage first, over entry periods.
        figures = compute_customers(
            plan,
            as_of=as_of,
            event_type="Visit",
            funnel_stages=["use", "Buy", "Explore"],
            window_days=window * 2,
            entry_from=entry_from,
            entry_to=entry_to,
            **kwargs,
        )
        want = reference(
            rows,
            as_of=when,
            event_type="visit",
            funnel_stages=["Use", "Buy", "Explore"],
            window_days=window * 2,
            entry_from=entry_from,
            entry_to=entry_to,
            **ref_kwargs,
        )
        check(figures, want, label + ", visits")


def test_the_generated_data_has_the_edges(plan):
    """What the reference comparisons rely on being there, so that they test it."""
    rows = store(plan, month_rows())
    map_events(plan)
    figures = compute_customers(plan, period="month")
    by_start = {p.start: p for p in figures.periods}
    assert figures.periods[0].start == dt.date(2025, 6, 1)
    assert figures.periods[-1].start == dt.date(2026, 4, 1) and figures.periods[-1].partial
    assert by_start[dt.date(2025, 12, 1)].active == 0  # the empty month
    assert by_start[dt.date(2025, 12, 1)].dormant == by_start[dt.date(2025, 11, 1)].active > 0
    assert by_start[dt.date(2026, 1, 1)].resurrecting > 0
    assert all(p.returning > 0 for p in figures.periods[1:5])
    assert any(len(c.retention) > 3 and c.retention[1].retained.customers for c in figures.cohorts)
    assert figures.funnel is not None and figures.funnel.steps[-1].reached.customers > 0
    # Moments written in other zones whose UTC month is not their local one.
    assert any(r.at.utcoffset() and r.at.month != r.at.astimezone(UTC).month for r in rows)

    weeks = compute_customers(plan, period="week", as_of=at("2026-01-04T23:59:59.999999"))
    assert weeks.periods[-1].start == dt.date(2025, 12, 29) and not weeks.periods[-1].partial


# --- hand-built cases, numbers written out -----------------------------------------------------------


def test_composition_by_hand(plan):
    """a: Nov, Dec, Feb; b: Nov (its last moment), Jan (in another zone); c: Jan, Feb."""
    map_events(plan)
    add(
        plan,
        ("a", "2025-11-10T09:00", "purchase"),
        ("a", "2025-12-05T09:00", "visit"),
        ("a", "2026-02-01T00:00", "purchase"),
        ("b", "2025-11-30T23:59:59.999999", "visit"),
        ("b", "2026-01-01T00:30:00+01:00", "login"),  # still December 31 in UTC
        ("b", "2026-01-03T10:00", "login"),
        ("c", "2026-01-15T10:00", "signup"),
        ("c", "2026-02-28T23:59:59.999999", "purchase"),
    )
    figures = compute_customers(plan, period="month")
    assert figures.as_of == at("2026-02-28T23:59:59.999999")
    got = [
        (p.start.isoformat(), p.partial, p.active, p.new, p.returning, p.resurrecting, p.dormant)
        for p in figures.periods
    ]
    assert got == [
        ("2025-11-01", False, 2, 2, 0, 0, 0),
        ("2025-12-01", False, 2, 0, 2, 0, 0),  # b's login at 23:30 UTC on December 31
        ("2026-01-01", False, 2, 1, 1, 0, 1),  # a dormant, c new
        ("2026-02-01", False, 2, 0, 1, 1, 1),  # a resurrecting, b dormant
    ]
    buy = [(p.stage_reach["Buy"].customers, p.stage_reach["Buy"].share) for p in figures.periods]
    assert buy == [(1, 0.5), (0, 0.0), (1, 0.5), (2, 1.0)]
    assert figures.periods[0].stage_reach["Discover"].customers == 0
    cohorts = [
        (c.start.isoformat(), c.size, [(r.k, r.retained.customers) for r in c.retention])
        for c in figures.cohorts
    ]
    # c's first purchase is in February (a signup is not a purchase): a cohort without a cell yet.
    assert cohorts == [("2025-11-01", 1, [(1, 0), (2, 0), (3, 1)]), ("2026-02-01", 1, [])]

    # As of a moment inside January: it is partial, and so are the cells that fall in it.
    january = compute_customers(plan, period="month", as_of=at("2026-01-10"))
    assert [(p.start.isoformat(), p.partial, p.active) for p in january.periods][-1] == (
        "2026-01-01",
        True,
        1,
    )
    assert [(r.k, r.partial) for r in january.cohorts[0].retention] == [(1, False), (2, True)]


def test_weeks_by_hand_across_a_year_end(plan):
    """ISO weeks: Monday 2025-12-29 to Sunday 2026-01-04 is one week, across the year end."""
    map_events(plan)
    add(
        plan,
        ("a", "2025-12-28T23:59:59", "purchase"),  # Sunday: the week of Monday 2025-12-22
        ("a", "2026-01-04T23:59:59.999999", "purchase"),  # Sunday: the week of 2025-12-29
        ("b", "2025-12-29T00:00:00", "purchase"),
        ("b", "2026-01-12T08:00:00", "purchase"),  # skips the week of 2026-01-05
        ("c", "2026-01-05T00:30:00+01:00", "visit"),  # Sunday 2026-01-04 23:30 UTC
    )
    figures = compute_customers(plan, period="week")
    got = [
        (p.start.isoformat(), p.active, p.new, p.returning, p.resurrecting, p.dormant)
        for p in figures.periods
    ]
    assert got == [
        ("2025-12-22", 1, 1, 0, 0, 0),
        ("2025-12-29", 3, 2, 1, 0, 0),
        ("2026-01-05", 0, 0, 0, 0, 3),
        ("2026-01-12", 1, 0, 0, 1, 0),
    ]
    assert figures.periods[-1].partial
    cohorts = [
        (c.start.isoformat(), c.size, [(r.k, r.retained.customers, r.partial) for r in c.retention])
        for c in figures.cohorts
    ]
    assert cohorts == [
        ("2025-12-22", 1, [(1, 1, False), (2, 0, False), (3, 0, True)]),
        ("2025-12-29", 1, [(1, 0, False), (2, 1, True)]),
    ]


def test_funnel_by_hand_at_the_window_edges(plan):
    """Explore (visit) → Buy (purchase, signup) → Use (login), a window of 10 days."""
    map_events(plan)
    t0 = "2026-01-01T00:00:00"
    add(
        plan,
        ("d1", t0, "visit"),
        ("d1", "2026-01-11T00:00:00", "purchase"),  # exactly t1 + 10 × 24 h: in
        ("d1", "2026-01-11T00:00:00", "login"),  # the same moment as the step before: in
        ("d2", t0, "visit"),
        ("d2", "2026-01-11T00:00:00.000001", "purchase"),  # a microsecond late
        ("d3", t0, "visit"),
        ("d3", "2026-01-02T00:00:00", "login"),  # Use before Buy: does not count
        ("d3", "2026-01-03T00:00:00", "purchase"),
        ("d4", t0, "visit"),
        ("d4", "2026-01-02T00:00:00", "login"),
        ("d4", "2026-01-03T00:00:00", "signup"),
        ("d4", "2026-01-04T00:00:00", "login"),  # after Buy: counts
        ("d5", "2025-12-31T00:00:00", "purchase"),  # Buy before Explore: not a step
        ("d5", t0, "visit"),
        ("d6", "2026-01-05T00:00:00", "purchase"),
        ("d6", "2026-01-05T00:00:00", "visit"),  # t1 itself: Buy at t1 counts
        ("d7", "2026-02-19T00:00:00", "visit"),  # exactly as_of − 10 days: an entrant
        ("d8", "2026-02-19T00:00:00.000001", "visit"),  # too recent
        ("d8", "2026-02-19T00:00:01", "purchase"),
        ("late", "2026-03-01T00:00:00", "support_ticket"),  # the latest event: as_of
    )
    figures = compute_customers(plan, period="month", window_days=10)
    funnel = figures.funnel
    assert funnel is not None
    assert [s.stage for s in funnel.steps] == ["Explore", "Buy", "Use", "Ask"]
    assert funnel.entrants == 7
    assert [s.reached.customers for s in funnel.steps] == [7, 4, 2, 0]
    assert [s.of_previous.share for s in funnel.steps] == [1.0, 4 / 7, 0.5, 0.0]
    assert funnel.as_json() == {
        "window_days": 10,
        "entrants": 7,
        "steps": [
            {"stage": "Explore", "customers": 7, "share": 1.0},
            {"stage": "Buy", "customers": 4, "share": 4 / 7},
            {"stage": "Use", "customers": 2, "share": 2 / 7},
            {"stage": "Ask", "customers": 0, "share": 0.0},
        ],
    }
    # The entry periods: January's entrants alone (d7 entered in February).
    january = compute_customers(
        plan, window_days=10, entry_from=dt.date(2026, 1, 31), entry_to=dt.date(2026, 1, 1)
    ).funnel
    assert january is not None and january.entrants == 6
    # Buy first: d1, d2, d3, d4 (a signup), d5 and d6 enter (d8 buys too late); only d5 and d6
    # visit at or after their first Buy event.
    buy_first = compute_customers(plan, window_days=10, funnel_stages=["Buy", "Explore"]).funnel
    assert buy_first is not None
    assert [s.reached.customers for s in buy_first.steps] == [6, 2]


def test_filters_keep_events_not_customers(plan):
    """A customer whose first event is outside the filter is new where the filter first sees them."""
    map_events(plan)
    add(
        plan,
        ("a", "2026-01-10", "purchase", None, "smb", "store"),
        ("a", "2026-02-10", "purchase", None, "smb", "web"),
        ("b", "2026-02-11", "visit", None, "enterprise", "web"),
        ("b", "2026-03-01", "login", None, "enterprise", "app"),
    )
    web = compute_customers(plan, channel="web")
    assert [(p.start.isoformat(), p.active, p.new, p.dormant) for p in web.periods] == [
        ("2026-02-01", 2, 2, 0),
        ("2026-03-01", 0, 0, 2),  # as_of (the latest event, unfiltered) is in March
    ]
    assert [(c.start.isoformat(), c.size) for c in web.cohorts] == [("2026-02-01", 1)]
    nothing = compute_customers(plan, segment="nobody")
    assert nothing.periods == [] and nothing.cohorts == []
    assert nothing.funnel is not None and nothing.funnel.entrants == 0


def test_an_as_of_before_the_data_and_a_plan_without_data(plan):
    map_events(plan)
    empty = compute_customers(plan)
    assert empty.as_json() == {
        "as_of": None,
        "period": "month",
        "event_type": "purchase",
        "periods": [],
        "cohorts": [],
        "funnel": {
            "window_days": 30,
            "entrants": 0,
            "steps": [
                {"stage": s, "customers": 0, "share": None}
                for s in ["Explore", "Buy", "Use", "Ask"]
            ],
        },
    }
    add(plan, ("a", "2026-01-10", "purchase"))
    before = compute_customers(plan, as_of=at("2025-12-31T23:59:59.999999"))
    assert before.periods == [] and before.cohorts == []


def test_unknown_or_repeated_funnel_stages_are_refused(plan):
    with pytest.raises(CustomersError, match="no stage “Checkout”"):
        compute_customers(plan, funnel_stages=["Buy", "Checkout"])
    with pytest.raises(CustomersError, match="twice"):
        compute_customers(plan, funnel_stages=["Buy", "buy"])
    with pytest.raises(CustomersError, match="period"):
        compute_customers(plan, period="year")


@pytest.mark.parametrize("period", ["month", "week"])
def test_period_keys_in_sql_are_the_calendar(plan, period):
    """The SQL numbering of periods, read back to a first day, is the UTC month or ISO week, over
    the whole calendar (leap days, year ends, week 53, the first and last years)."""
    moments = [
        at("0001-01-02T00:00:00"),
        at("1900-02-28T23:59:59.999999"),
        at("1900-03-01T00:00:00"),
        at("2000-02-29T12:00:00"),
        at("2004-12-31T23:59:59"),  # a Friday in ISO week 53 of 2004
        at("2005-01-02T23:59:59.999999"),  # a Sunday, still week 53 of 2004
        at("2005-01-03T00:00:00"),
        at("2026-01-01T00:30:00+01:00"),
        at("9999-12-30T23:59:59"),
    ]
    add(plan, *[(f"c{n}", m, "visit") for n, m in enumerate(moments)])
    rows = fetchall(
        f"SELECT customer_id, {period_key('occurred_at', period)} FROM insights_event"
        " WHERE plan_id = %s",
        [plan.pk],
    )
    got = {customer: index_start(int(key), period) for customer, key in rows}
    assert got == {f"c{n}": ref_period(m, period) for n, m in enumerate(moments)}


# --- the speed rule: statements do not grow with periods or cohorts ------------------------------------


def _statements(plan: Plan, period: str) -> tuple[int, int]:
    with CaptureQueriesContext(connection) as queries:
        figures = compute_customers(plan, period=period)
    statements = [q["sql"] for q in queries.captured_queries]
    assert figures.periods and figures.cohorts
    return len(statements), sum("insights_event" in s for s in statements)


@pytest.mark.parametrize("period", ["month", "week"])
def test_statements_do_not_grow_with_periods_or_cohorts(period):
    short = create_plan("Three months", "three-months")
    long = create_plan("Three years", "three-years")
    store(short, generate(31, at("2025-01-03"), at("2025-03-28T12:00"), customers=60))
    store(long, generate(32, at("2022-04-03"), at("2025-03-28T12:00"), customers=200))
    for plan in (short, long):
        map_events(plan)
    _statements(short, period)  # nothing cached by the process on the first call is counted
    few, many = _statements(short, period), _statements(long, period)
    long_figures = compute_customers(long, period=period)
    assert len(long_figures.periods) >= (36 if period == "month" else 150)
    assert len(long_figures.cohorts) >= (30 if period == "month" else 100)
    # The latest event, the stages with their map, then one statement per figure.
    assert few == many == (5, 4)


# --- manage.py customers SLUG --json --------------------------------------------------------------------

KEYS = {"as_of", "period", "event_type", "periods", "cohorts", "funnel"}
PERIOD_KEYS = {"start", "partial", "active", "new", "returning", "resurrecting", "dormant"}
REACH_KEYS = {"customers", "share", "ci_low", "ci_high"}
COHORT_KEYS = {"start", "size", "retention"}
CELL_KEYS = {"k", "customers", "share", "ci_low", "ci_high", "partial"}
FUNNEL_KEYS = {"window_days", "entrants", "steps"}
STEP_KEYS = {"stage", "customers", "share"}


def _command(*args: str) -> dict[str, Any]:
    out = io.StringIO()
    call_command("customers", *args, stdout=out)
    return json.loads(out.getvalue())


def test_the_command_prints_section_8s_object(plan):
    rows = store(plan, month_rows())
    map_events(plan)
    printed = _command(
        plan.slug,
        "--json",
        "--period",
        "week",
        "--as-of",
        "2026-01-07",
        "--segment",
        "smb",
        "--channel",
        "web",
        "--event-type",
        "VISIT",
    )
    assert set(printed) == KEYS
    assert printed["as_of"] == "2026-01-07T00:00:00+00:00"
    assert (printed["period"], printed["event_type"]) == ("week", "visit")
    for p in printed["periods"]:
        assert set(p) == PERIOD_KEYS | {"stage_reach"}
        assert list(p["stage_reach"]) == STAGES
        assert all(set(r) == REACH_KEYS for r in p["stage_reach"].values())
    assert all(set(c) == COHORT_KEYS for c in printed["cohorts"])
    assert all(set(cell) == CELL_KEYS for c in printed["cohorts"] for cell in c["retention"])
    assert set(printed["funnel"]) == FUNNEL_KEYS
    assert all(set(s) == STEP_KEYS for s in printed["funnel"]["steps"])
    want = reference(
        rows,
        as_of=at("2026-01-07"),
        period="week",
        event_map=EVENT_MAP,
        segment="smb",
        channel="web",
        event_type="visit",
    )
    for step in want["funnel"]["steps"]:
        for extra in ("ci_low", "ci_high", "of_previous"):
            del step[extra]
    found = differences(printed, want)
    assert not found, found[:8]
    assert printed["periods"][-1]["partial"] and printed["cohorts"]


def test_the_command_defaults_to_the_plans_period_and_latest_event(plan):
    store(plan, week_rows())
    plan.period = "week"
    plan.save()
    printed = _command(plan.slug, "--json")
    assert printed["period"] == "week" and printed["event_type"] == "purchase"
    assert printed["as_of"] == "2021-01-27T19:00:00+00:00"
    assert printed["funnel"]["steps"] == []  # nothing mapped: no stage in the default funnel
    out = io.StringIO()
    call_command("customers", plan.slug, stdout=out)
    assert "2021-01-25" in out.getvalue() and "(partial)" in out.getvalue()


def test_the_command_refuses_what_it_cannot_read(plan):
    with pytest.raises(CommandError, match="no plan"):
        call_command("customers", "nope", "--json")
    with pytest.raises(CommandError, match="ISO 8601"):
        call_command("customers", plan.slug, "--json", "--as-of", "last tuesday")
