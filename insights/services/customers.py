"""Customers: the life cycle in numbers (DOMAIN §8).

For a plan as of a moment, after the optional segment / channel filters, per calendar month or
ISO week (UTC): each period's active, new, returning, resurrecting and dormant customers and
its reach of every stage; cohort retention for one event type; and the funnel over ordered
stages. Each figure is one SQL statement reading the events once, however many periods or
cohorts there are.

Periods are numbered in SQL, per row (`period_key`): months since January of year 0, weeks
since Monday 0001-01-01. "The period before" and "cohort + k" are then arithmetic, and Python only
lays the per-period rows out on the calendar. The same statements run on PostgreSQL, SQLite and a
plan's Spark source: their few differences are in insights.metrics.sql (`period_number`).
"""

# The SQL is assembled from fixed fragments; every value travels as a query parameter (as in
# insights/metrics, which pyproject.toml exempts by path).
# ruff: noqa: S608

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from lifecycle.models import Stage
from planning.models import Period, Plan

from ..metrics import Scope, latest_event_at, wilson
from ..metrics.sql import EVENTS, days_before, fetchall, moment, period_number, plus_days
from ..periods import first_day, last_moment, midnight, period_start

DEFAULT_EVENT_TYPE = "purchase"
DEFAULT_WINDOW_DAYS = 30
# Week 0 starts on Monday 0001-01-01 (the proleptic Gregorian calendar's first day is a Monday).
WEEK_ZERO = dt.date(1, 1, 1)


class CustomersError(ValueError):
    """The figures cannot be drawn as asked; the message says why, in words a CMO understands."""


# --- periods ------------------------------------------------------------------------------------


def period_key(column: str, period: str) -> str:
    """SQL for the number of the UTC period holding a timestamp column (see `period_index`)."""
    return period_number(column, weekly=period == Period.WEEK)


def period_index(day: dt.date, period: str) -> int:
    """The number `period_key` gives the period holding `day`."""
    start = first_day(day, period)
    if period == Period.WEEK:
        return (start - WEEK_ZERO).days // 7
    return start.year * 12 + start.month - 1


def index_start(index: int, period: str) -> dt.date:
    """The first day of period number `index`."""
    if period == Period.WEEK:
        return WEEK_ZERO + dt.timedelta(weeks=index)
    return dt.date(index // 12, index % 12 + 1, 1)


def _check_period(period: str) -> None:
    if period not in Period.values:
        raise CustomersError(f"“{period}” is not a period: use month or week.")


@dataclass(frozen=True)
class Frame:
    """Which events the figures read (the plan's, filtered, up to as_of) and how time is cut."""

    scope: Scope
    period: str

    @property
    def last(self) -> int:
        """The number of the period holding as_of: the last one."""
        return period_index(period_start(self.scope.as_of, self.period), self.period)

    @property
    def last_is_partial(self) -> bool:
        start = period_start(self.scope.as_of, self.period)
        return self.scope.as_of != last_moment(start, self.period)

    def key(self, column: str = "e.occurred_at") -> str:
        return period_key(column, self.period)


# --- what the figures are -----------------------------------------------------------------------


@dataclass(frozen=True)
class Share:
    """Customers as a share of a base, with its 95% Wilson interval (None over no one)."""

    customers: int
    base: int
    share: float | None
    ci_low: float | None
    ci_high: float | None

    @classmethod
    def of(cls, customers: int, base: int) -> Share:
        m = wilson(customers, base)
        return cls(customers, base, m.value, m.ci_low, m.ci_high)

    def as_json(self) -> dict[str, Any]:
        return {
            "customers": self.customers,
            "share": self.share,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
        }


@dataclass(frozen=True)
class PeriodFigures:
    start: dt.date
    partial: bool
    active: int
    new: int
    returning: int
    resurrecting: int
    dormant: int
    stage_reach: dict[str, Share]

    def as_json(self) -> dict[str, Any]:
        return {
            "start": self.start.isoformat(),
            "partial": self.partial,
            "active": self.active,
            "new": self.new,
            "returning": self.returning,
            "resurrecting": self.resurrecting,
            "dormant": self.dormant,
            "stage_reach": {name: reach.as_json() for name, reach in self.stage_reach.items()},
        }


@dataclass(frozen=True)
class RetentionCell:
    k: int
    retained: Share
    partial: bool

    def as_json(self) -> dict[str, Any]:
        return {"k": self.k, **self.retained.as_json(), "partial": self.partial}


@dataclass(frozen=True)
class Cohort:
    start: dt.date
    size: int
    retention: list[RetentionCell]

    def as_json(self) -> dict[str, Any]:
        return {
            "start": self.start.isoformat(),
            "size": self.size,
            "retention": [cell.as_json() for cell in self.retention],
        }


@dataclass(frozen=True)
class FunnelStep:
    stage: str
    reached: Share  # over the entrants
    of_previous: Share  # over the customers who reached the step before (step 1: the entrants)

    def as_json(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "customers": self.reached.customers,
            "share": self.reached.share,
        }


@dataclass(frozen=True)
class Funnel:
    window_days: int
    entry_from: dt.date | None  # first entry period's start; None: from the first
    entry_to: dt.date | None  # last entry period's start; None: up to the last
    entrants: int
    steps: list[FunnelStep]

    def as_json(self) -> dict[str, Any]:
        return {
            "window_days": self.window_days,
            "entrants": self.entrants,
            "steps": [step.as_json() for step in self.steps],
        }


@dataclass(frozen=True)
class CustomerFigures:
    as_of: dt.datetime | None  # None: the plan has no events
    period: str
    event_type: str
    segment: str = ""
    channel: str = ""
    periods: list[PeriodFigures] = field(default_factory=list)
    cohorts: list[Cohort] = field(default_factory=list)
    funnel: Funnel | None = None

    def as_json(self) -> dict[str, Any]:
        """The object `manage.py customers SLUG --json` prints (DOMAIN §8)."""
        return {
            "as_of": self.as_of.astimezone(dt.UTC).isoformat() if self.as_of else None,
            "period": self.period,
            "event_type": self.event_type,
            "periods": [p.as_json() for p in self.periods],
            "cohorts": [c.as_json() for c in self.cohorts],
            "funnel": self.funnel.as_json() if self.funnel else None,
        }


# --- the stages and their event types ------------------------------------------------------------

StageTypes = list[tuple[str, list[str]]]


def stage_types(plan_id: int) -> StageTypes:
    """The plan's stages in order, each with the event types its map puts there (one query)."""
    stages: dict[int, tuple[str, list[str]]] = {}
    rows = (
        Stage.objects.filter(plan_id=plan_id)
        .order_by("position", "id", "event_types__event_type")
        .values_list("id", "name", "event_types__event_type")
    )
    for stage_id, name, event_type in rows:
        stages.setdefault(stage_id, (name, []))
        if event_type:
            stages[stage_id][1].append(event_type)
    return list(stages.values())


def _in_types(types: list[str], column: str = "e.event_type") -> tuple[str, list[str]]:
    if not types:
        return "1 = 0", []
    return f"{column} IN ({', '.join(['%s'] * len(types))})", list(types)


# --- the figures ---------------------------------------------------------------------------------


def period_figures(frame: Frame, stages: StageTypes) -> list[PeriodFigures]:
    """Active, new, returning, resurrecting and dormant customers and the reach of every stage,
    per period from the first holding a kept event to the one holding as_of.

    One statement: the events grouped by customer and period (with a flag per stage), then each
    customer's periods beside their previous and next one. A customer's first period is where
    they are new; the period after one they were active in, if they are not in it, is where
    they are dormant."""
    where, params = frame.scope.filters()
    flags, flag_params = [], []
    for number, (_, types) in enumerate(stages):
        in_stage, types_params = _in_types(types)
        flags.append(f", MAX(CASE WHEN {in_stage} THEN 1 ELSE 0 END) AS s{number}")
        flag_params += types_params
    sums = "".join(f", SUM(s{number})" for number in range(len(stages)))
    carried = "".join(f", s{number}" for number in range(len(stages)))
    sql = f"""
        WITH active AS (
            SELECT e.customer_id AS c, {frame.key()} AS p {"".join(flags)}
            FROM {EVENTS} e WHERE {where} GROUP BY 1, 2
        ), beside AS (
            SELECT p, LAG(p) OVER w AS p_prev, LEAD(p) OVER w AS p_next {carried}
            FROM active WINDOW w AS (PARTITION BY c ORDER BY p)
        )
        SELECT p, COUNT(*),
               SUM(CASE WHEN p_prev IS NULL THEN 1 ELSE 0 END),
               SUM(CASE WHEN p_prev = p - 1 THEN 1 ELSE 0 END),
               SUM(CASE WHEN p_next IS NULL OR p_next > p + 1 THEN 1 ELSE 0 END)
               {sums}
        FROM beside GROUP BY p
    """
    rows = {
        int(row[0]): [int(v or 0) for v in row[1:]]
        for row in fetchall(sql, [*flag_params, *params])
    }
    if not rows:
        return []
    last, partial = frame.last, frame.last_is_partial
    out = []
    empty = [0] * (4 + len(stages))
    for index in range(min(rows), last + 1):
        active, new, returning, _, *reached = rows.get(index, empty)
        # Customers of the period before who are not in this one.
        dormant = rows.get(index - 1, empty)[3]
        out.append(
            PeriodFigures(
                start=index_start(index, frame.period),
                partial=partial and index == last,
                active=active,
                new=new,
                returning=returning,
                resurrecting=active - new - returning,
                dormant=dormant,
                stage_reach={
                    name: Share.of(count, active)
                    for (name, _), count in zip(stages, reached, strict=True)
                },
            )
        )
    return out


def cohort_retention(frame: Frame, event_type: str) -> list[Cohort]:
    """Per cohort (the period of a customer's first `event_type` event), the share of its
    customers with such an event k periods later, for k from 1 to the period holding as_of.

    One statement over the type's events: each customer's periods with one, beside their first."""
    where, params = frame.scope.filters()
    sql = f"""
        WITH typed AS (
            SELECT e.customer_id AS c, {frame.key()} AS p
            FROM {EVENTS} e WHERE {where} AND e.event_type = %s GROUP BY 1, 2
        )
        SELECT c0, p - c0, COUNT(*) FROM (
            SELECT p, MIN(p) OVER (PARTITION BY c) AS c0 FROM typed
        ) firsts GROUP BY 1, 2
    """
    cells: dict[int, dict[int, int]] = {}
    for c0, k, count in fetchall(sql, [*params, event_type]):
        cells.setdefault(int(c0), {})[int(k)] = int(count)
    last, partial = frame.last, frame.last_is_partial
    cohorts = []
    for c0 in sorted(cells):
        size = cells[c0][0]
        retention = [
            RetentionCell(
                k,
                Share.of(cells[c0].get(k, 0), size),
                partial and c0 + k == last,
            )
            for k in range(1, last - c0 + 1)
        ]
        cohorts.append(Cohort(index_start(c0, frame.period), size, retention))
    return cohorts


def funnel(
    frame: Frame,
    stages: StageTypes,
    window_days: int = DEFAULT_WINDOW_DAYS,
    entry_from: dt.date | None = None,
    entry_to: dt.date | None = None,
) -> Funnel:
    """Entrants: customers whose first S1 event ever (t1) lies in the entry periods and at or
    before as_of − window_days. Step k ≥ 2 is reached at the earliest Sk event t with
    t(k−1) ≤ t ≤ t1 + window_days × 24 h.

    One statement: the funnel's events of each customer beside their first S1 event (a window
    over one read of the events), kept within their window; then each step's earliest moment
    at or after the step before, step by step over those few rows."""
    if window_days < 0:
        raise CustomersError("The funnel's window cannot be negative.")
    if not stages:
        return Funnel(window_days, entry_from, entry_to, 0, [])
    if entry_from is not None:
        entry_from = first_day(entry_from, frame.period)
    if entry_to is not None:
        entry_to = first_day(entry_to, frame.period)
    counts = _funnel_counts(frame, stages, window_days, entry_from, entry_to)
    entrants = counts[0]
    steps = [
        FunnelStep(name, Share.of(count, entrants), Share.of(count, previous))
        for (name, _), count, previous in zip(stages, counts, [entrants, *counts], strict=False)
    ]
    return Funnel(window_days, entry_from, entry_to, entrants, steps)


def _funnel_counts(
    frame: Frame,
    stages: StageTypes,
    window_days: int,
    entry_from: dt.date | None,
    entry_to: dt.date | None,
) -> list[int]:
    scope = frame.scope
    all_types = [t for _, types in stages for t in types]
    first_types = stages[0][1]
    if not first_types:
        return [0] * len(stages)
    where, params = scope.filters()
    step_case = " ".join(
        f"WHEN {_in_types(types)[0]} THEN {number}"
        for number, (_, types) in enumerate(stages, start=1)
        if types
    )
    step_params = [t for _, types in stages for t in types]
    in_first, first_params = _in_types(first_types)
    in_any, any_params = _in_types(all_types)
    # Entrants' first S1 event: old enough to have had the whole window, within the entry periods.
    latest = days_before(scope.as_of, window_days)
    if entry_to is not None:
        latest = min(latest, last_moment(entry_to, frame.period))
    bounds, bound_params = "t1 <= %s", [moment(latest)]
    if entry_from is not None:
        bounds += " AND t1 >= %s"
        bound_params.append(moment(midnight(entry_from)))
    # Step by step, each customer's t(k) beside each of their rows: a window over the rows
    # found so far, never a join (joins of these rows with each other were planned as nested
    # loops by PostgreSQL, which cannot estimate how many customers each step keeps).
    sql = f"""
        SELECT c, t, step, t1 AS t_1 FROM (
            SELECT e.customer_id AS c, e.occurred_at AS t,
                   CASE {step_case} END AS step,
                   MIN(CASE WHEN {in_first} THEN e.occurred_at END)
                       OVER (PARTITION BY e.customer_id) AS t1
            FROM {EVENTS} e WHERE {where} AND {in_any}
        ) beside_first
        WHERE {bounds} AND t >= t1 AND t <= {plus_days("t1", window_days)}
    """
    found = ["t_1"]
    for number in range(2, len(stages) + 1):
        sql = f"""
            SELECT c, t, step, {", ".join(found)},
                   MIN(CASE WHEN step = {number} AND t >= t_{number - 1} THEN t END)
                       OVER (PARTITION BY c) AS t_{number}
            FROM ({sql}) step_{number - 1}
        """
        found.append(f"t_{number}")
    counts = ", ".join(f"COUNT(t_{n})" for n in range(1, len(stages) + 1))
    per_step = ", ".join(f"MAX(t_{n}) AS t_{n}" for n in range(1, len(stages) + 1))
    sql = f"SELECT {counts} FROM (SELECT {per_step} FROM ({sql}) steps GROUP BY c) per_customer"
    (row,) = fetchall(sql, [*step_params, *first_params, *params, *any_params, *bound_params])
    return [int(count) for count in row]


# --- all of them ---------------------------------------------------------------------------------


def compute_customers(
    plan: Plan,
    *,
    as_of: dt.datetime | None = None,
    period: str | None = None,
    segment: str = "",
    channel: str = "",
    event_type: str = DEFAULT_EVENT_TYPE,
    funnel_stages: list[str] | None = None,
    window_days: int = DEFAULT_WINDOW_DAYS,
    entry_from: dt.date | None = None,
    entry_to: dt.date | None = None,
) -> CustomerFigures:
    """The Customers figures of a plan (DOMAIN §8): as of its latest event unless pinned, per
    the plan's period unless told, after the optional filters.

    `funnel_stages` names the funnel's stages in order (default: the plan's stages that have
    mapped event types); `entry_from` / `entry_to` pick its entry periods (any day in them)."""
    period = period or plan.period
    _check_period(period)
    event_type = (event_type or DEFAULT_EVENT_TYPE).strip().lower()
    stages = stage_types(plan.pk)
    chosen = _funnel_stages(stages, funnel_stages)
    if as_of is None:
        as_of = latest_event_at(plan.pk)
    if as_of is None:
        empty_funnel = Funnel(
            window_days,
            entry_from,
            entry_to,
            0,
            [FunnelStep(name, Share.of(0, 0), Share.of(0, 0)) for name, _ in chosen],
        )
        return CustomerFigures(None, period, event_type, segment, channel, funnel=empty_funnel)
    frame = Frame(Scope(plan.pk, as_of, segment, channel), period)
    return CustomerFigures(
        as_of=as_of,
        period=period,
        event_type=event_type,
        segment=segment,
        channel=channel,
        periods=period_figures(frame, stages),
        cohorts=cohort_retention(frame, event_type),
        funnel=funnel(frame, chosen, window_days, entry_from, entry_to),
    )


def _funnel_stages(stages: StageTypes, names: list[str] | None) -> StageTypes:
    if names is None:
        return [(name, types) for name, types in stages if types]
    by_name = {name.lower(): (name, types) for name, types in stages}
    chosen = []
    for name in names:
        found = by_name.get(name.strip().lower())
        if found is None:
            raise CustomersError(f"The plan has no stage “{name}”.")
        if found in chosen:
            raise CustomersError(f"The funnel names the stage “{found[0]}” twice.")
        chosen.append(found)
    return chosen
