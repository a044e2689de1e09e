"""The metrics of DOMAIN §5, each one SQL statement evaluated at one or many moments.

A metric is written once, as a *series*: its value as of each of a list of moments (`ends`,
oldest first), computed in one pass over the events — a re-test asks for one moment (as_of),
a history (§10) for the end of every period. No statement joins the events with a table of
moments: each row learns the moments it counts for from `sql.position` (a few comparisons
with the moments, as parameters), the statement groups rows that count for the same moments,
and Python adds each group into those moments (`_spread`). So a series of 24 periods costs
about what one moment does, never a query per period; with one moment the positions are
constants and the statement is the plain aggregate a person would write.

Where a moment counts *distinct customers* over a window (active customers, stage reach,
churn), rows are first reduced to one per customer and part of the timeline, and each such row
adds only the moments the customer's earlier rows did not (a window function over the
customer's rows): counts per moment without a DISTINCT per moment.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from lifecycle.models import EventMapping, Stage

from .sql import (
    EVENTS,
    day,
    days_before,
    exact_squares,
    exact_sum,
    fetchall,
    larger,
    moment,
    plus_days,
    position,
    squared,
    to_fraction,
    unindexed,
)
from .stats import Measurement, Moments, nps_interval, wilson


class MetricError(Exception):
    """The test cannot be evaluated; the message says why in words a CMO understands."""


Ends = Sequence[dt.datetime]
Spans = Sequence[tuple[dt.datetime, dt.datetime]]


@dataclass(frozen=True)
class Scope:
    """Which events a test looks at: the plan's, up to as_of, filtered, optionally windowed."""

    plan_id: int
    as_of: dt.datetime
    segment: str = ""
    channel: str = ""
    window_days: int | None = None

    @property
    def window_start(self) -> dt.datetime | None:
        """Events of the window are after this moment (exclusive), None: no lower bound."""
        return days_before(self.as_of, self.window_days) if self.window_days else None

    def filters(
        self, alias: str = "e", spans: Spans = (), typed: bool = True
    ) -> tuple[str, list[Any]]:
        """SQL conditions for the filtered events up to as_of (no window), and their params.
        `spans`: only the events of these (start, end] spans, ascending and apart (the windows
        of a series). `typed` False: the statement reads events of every type.

        SQLite must not answer a time bound from the (plan, type, time) index when the
        statement reads every type (`unindexed`), and as_of never narrows much: only a typed
        statement's spans are left to the index."""
        time = f"{alias}.occurred_at"
        spanned = time if typed else unindexed(time)
        sql = [f"{alias}.plan_id = %s", f"{unindexed(time)} <= %s"]
        params: list[Any] = [self.plan_id, moment(self.as_of)]
        if spans:
            sql.append(f"{spanned} > %s")
            params.append(moment(spans[0][0]))
        if len(spans) > 1:
            sql.append(f"({' OR '.join([f'{spanned} > %s AND {spanned} <= %s'] * len(spans))})")
            params += [moment(bound) for span in spans for bound in span]
        if self.segment:
            sql.append(f"{alias}.segment = %s")
            params.append(self.segment)
        if self.channel:
            sql.append(f"{alias}.channel = %s")
            params.append(self.channel)
        return " AND ".join(sql), params


def _check(scope: Scope, ends: Ends) -> None:
    if not ends or list(ends) != sorted(ends) or ends[-1] != scope.as_of:
        raise ValueError("ends must be ascending and end at the scope's as_of")


def _window_starts(scope: Scope, ends: Ends) -> list[dt.datetime]:
    """Each moment's window start (exclusive); only for a windowed scope."""
    assert scope.window_days
    return [days_before(at, scope.window_days) for at in ends]


def _windowed(scope: Scope, ends: Ends, typed: bool = True) -> tuple[str, list[Any]]:
    """Conditions for the events in the windows of the series (every event up to as_of when
    the test has no window), and their params: a short window at the end of each month leaves
    most events out."""
    spans: list[tuple[dt.datetime, dt.datetime]] = []
    if scope.window_days:
        for start, end in zip(_window_starts(scope, ends), ends, strict=True):
            if spans and start <= spans[-1][1]:  # the windows overlap or touch: one span
                spans[-1] = (spans[-1][0], end)
            else:
                spans.append((start, end))
    return scope.filters(spans=spans, typed=typed)


def _first_moment(column: str, ends: Ends) -> tuple[str, list[Any]]:
    """SQL for the first moment at or after the value (j: the value <= ends[j]); the value is
    at or before as_of, the last moment."""
    return position(column, ends, high=len(ends) - 1)


def _window_stop(
    scope: Scope, ends: Ends, column: str = "e.occurred_at", low: int = 1
) -> tuple[str, list[Any]]:
    """SQL for the moment from which on the value is out of the window (every moment before it
    has its window start before the value); the number of moments when there is no window.
    `low` 1: the value is after the first window start (kept by `_windowed`, or a cohort)."""
    if not scope.window_days:
        return str(len(ends)), []
    return position(column, _window_starts(scope, ends), low=low)


def _beside(function: str, window: str, ends: Ends) -> str:
    """`function` (LAG, LEAD…) over a customer's parts of the timeline, ordered by `window`.
    With one moment a customer has one part and nothing beside it: NULL, and the statement has
    no window function left to sort for (it is then the plain aggregate of a single moment)."""
    if len(ends) == 1:
        return "CAST(NULL AS INTEGER)"
    return f"{function} OVER ({window})"


def _spread(rows: Iterable[Sequence[Any]], k: int, width: int) -> list[tuple]:
    """Rows (start, stop, v1…v_width): each adds its values to every moment j with
    start <= j < stop; the sums at each of the k moments."""
    changes = [[0] * width for _ in range(k + 1)]
    for start, stop, *values in rows:
        if start is None:
            continue
        start, stop = int(start), min(int(stop), k)
        if start >= stop:
            continue
        for i, value in enumerate(values):
            changes[start][i] += value or 0
            changes[stop][i] -= value or 0
    out, running = [], [0] * width
    for j in range(k):
        running = [total + change for total, change in zip(running, changes[j], strict=True)]
        out.append(tuple(running))
    return out


# --- the metrics --------------------------------------------------------------------------------


def active_customers(scope: Scope, ends: Ends, event_type: str | None = None) -> list[Measurement]:
    _check(scope, ends)
    k = len(ends)
    where, params = _windowed(scope, ends, typed=bool(event_type))
    if event_type:
        where += " AND e.event_type = %s"
        params.append(event_type)
    if scope.window_days:
        sql, sql_params = _distinct_customers(scope, ends, where, params)
        rows = fetchall(sql, sql_params)
        counts = _spread(((start, stop, n) for start, stop, n, _, _ in rows), k, 1)
    else:
        # A customer is active up to a moment from their first event on.
        start, start_params = _first_moment("t0", ends)
        sql = f"""
            SELECT start, {k}, COUNT(*) FROM (
                SELECT {start} AS start FROM (
                    SELECT MIN(e.occurred_at) AS t0 FROM {EVENTS} e WHERE {where}
                    GROUP BY e.customer_id
                ) firsts
            ) starts GROUP BY start
        """
        counts = _spread(fetchall(sql, [*start_params, *params]), k, 1)
    return [Measurement(float(count), None) for (count,) in counts]


def _distinct_customers(
    scope: Scope, ends: Ends, where: str, params: list[Any], flag: str | None = None
) -> tuple[str, list[Any]]:
    """A statement of rows (start, stop, customers, flagged from, flagged stop): each customer
    counts once for each moment whose window holds one of their events.

    The events are reduced to one row per customer and part of the timeline (a: the first
    moment at or after them) with the part's latest event, whose window stop c (the first
    moment whose window no longer reaches back to it) is the latest of the part's: the part
    counts for the moments [a, c). In time order, each row adds the moments its customer's
    earlier rows did not (`prev_c`: their latest c, as both a and c grow with time). With
    `flag` (SQL true for some events), the same for the flagged events alone, in the last two
    columns: the moments whose window holds a flagged event of the customer's."""
    first, first_params = _first_moment("e.occurred_at", ends)
    stop, stop_params = _window_stop(scope, ends, "t_last")
    window = "PARTITION BY customer ORDER BY a"
    if flag:
        flagged_stop, flagged_stop_params = _window_stop(scope, ends, "t_flagged")
        earlier = f"{window} ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING"
        flagged = f", MAX(CASE WHEN {flag} THEN t END) AS t_flagged"
        flagged_c = f", CASE WHEN t_flagged IS NOT NULL THEN {flagged_stop} END AS fc"
        prev_flagged = f", {_beside('MAX(fc)', earlier, ends)} AS prev_fc"
        flagged_from = f"CASE WHEN fc IS NOT NULL THEN {larger('prev_fc', 'a')} END"
    else:
        flagged = flagged_c = prev_flagged = ""
        flagged_stop_params = []
        flagged_from = "NULL"
    sql = f"""
        WITH parts AS (
            SELECT customer, a, MAX(t) AS t_last {flagged} FROM (
                SELECT e.customer_id AS customer, e.occurred_at AS t, e.event_type, {first} AS a
                FROM {EVENTS} e WHERE {where}
            ) e GROUP BY customer, a
        ), reaches AS (
            SELECT customer, a, {stop} AS c {flagged_c} FROM parts
        ), spans AS (
            SELECT *, {_beside("LAG(c)", window, ends)} AS prev_c {prev_flagged} FROM reaches
        )
        SELECT start, c, COUNT(*), flagged_from, {"fc" if flag else "NULL"} FROM (
            SELECT {larger("prev_c", "a")} AS start, c, {flagged_from} AS flagged_from
                   {", fc" if flag else ""}
            FROM spans
        ) counted GROUP BY start, c, flagged_from {", fc" if flag else ""}
    """
    return sql, [*first_params, *params, *stop_params, *flagged_stop_params]


def _cohorts(scope: Scope, ends: Ends, within_days: int) -> tuple[str, list[Any]]:
    """SQL true for a first moment `t0` in some moment's cohort (in its window, at or before
    it minus within_days), and its params: with one moment, that moment's cohort alone, so the
    database drops the other customers before it looks further."""
    cohorts, params = "t0 <= %s", [moment(days_before(ends[-1], within_days))]
    if scope.window_days:
        cohorts += " AND t0 > %s"
        params.append(moment(_window_starts(scope, ends)[0]))
    return cohorts, params


def _cohort_rates(
    scope: Scope, ends: Ends, per_customer: str, params: list[Any], within_days: int
) -> list[Measurement]:
    """Share of a cohort with a success, per moment. `per_customer` is SQL of common table
    expressions, the last one `per_customer` of rows (t0, hit): a customer's first moment and
    whether they succeeded, which must not depend on the moment (it looks no further than
    t0 + within_days). The cohort of a moment: t0 in its window and at or before it minus
    within_days."""
    k = len(ends)
    cohorts, cohort_params = _cohorts(scope, ends, within_days)
    matured = [days_before(at, within_days) for at in ends]
    start, start_params = position("t0", matured, high=k - 1)
    stop, stop_params = _window_stop(scope, ends, "t0")
    sql = f"""
        WITH {per_customer}
        SELECT start, stop, COUNT(*), COALESCE(SUM(hit), 0) FROM (
            SELECT {start} AS start, {stop} AS stop, hit FROM per_customer WHERE {cohorts}
        ) cohorts GROUP BY start, stop
    """
    rows = _spread(fetchall(sql, [*params, *start_params, *stop_params, *cohort_params]), k, 2)
    return [wilson(int(hits), int(n)) for n, hits in rows]


def repeat_rate(scope: Scope, ends: Ends, event_type: str, within_days: int) -> list[Measurement]:
    """Share of mature new customers who come back on a later day within `within_days`.

    One pass over the type's events, each beside its customer's first: a correlated lookup per
    customer costs an index probe each, 2-3x slower with tens of thousands of customers."""
    _check(scope, ends)
    where, params = scope.filters()
    per_customer = f"""per_customer AS (
        SELECT t0, MAX(CASE WHEN t > t0 AND t <= {plus_days("t0", within_days)}
                            AND {day("t")} > {day("t0")} THEN 1 ELSE 0 END) AS hit
        FROM (
            SELECT e.customer_id, e.occurred_at AS t,
                   MIN(e.occurred_at) OVER (PARTITION BY e.customer_id) AS t0
            FROM {EVENTS} e WHERE {where} AND e.event_type = %s
        ) typed GROUP BY customer_id, t0
    )"""
    return _cohort_rates(scope, ends, per_customer, [*params, event_type], within_days)


def conversion_rate(
    scope: Scope, ends: Ends, from_event: str, to_event: str, within_days: int
) -> list[Measurement]:
    """Share of customers whose first `from_event` is in the window (and old enough) who have a
    `to_event` at or after it, within `within_days`.

    The cohorts' customers first (each customer's first `from_event`, kept when it is in some
    moment's cohort), then their `to_event`s (found by an IN list: a hash, or SQLite's
    temporary index, never a scan per customer, which took 24 s on the demo), each set beside
    its customer's first by a window function. With one moment only the cohort's events are
    sorted, not every customer's of the two types."""
    _check(scope, ends)
    where, params = scope.filters()
    cohorts, cohort_params = _cohorts(scope, ends, within_days)
    # A conversion is at or after its t0, so after the first window's start.
    converting, converting_params = _windowed(scope, ends)
    per_customer = f"""firsts AS (
            SELECT e.customer_id AS customer, MIN(e.occurred_at) AS t0 FROM {EVENTS} e
            WHERE {where} AND e.event_type = %s GROUP BY e.customer_id
        ), cohort AS (
            SELECT customer, t0 FROM firsts WHERE {cohorts}
        ), per_customer AS (
            SELECT t0, MAX(CASE WHEN t >= t0 AND t <= {plus_days("t0", within_days)}
                           THEN 1 ELSE 0 END) AS hit
            FROM (
                SELECT customer, t, MIN(t0) OVER (PARTITION BY customer) AS t0 FROM (
                    SELECT customer, t0, NULL AS t FROM cohort
                    UNION ALL
                    SELECT e.customer_id, NULL, e.occurred_at FROM {EVENTS} e
                    WHERE {converting} AND e.event_type = %s
                      AND e.customer_id IN (SELECT customer FROM cohort)
                ) cohort_and_events
            ) beside GROUP BY customer, t0
        )"""
    return _cohort_rates(
        scope,
        ends,
        per_customer,
        [*params, from_event, *cohort_params, *converting_params, to_event],
        within_days,
    )


def churn_rate(scope: Scope, ends: Ends, inactive_days: int) -> list[Measurement]:
    """Of the customers seen before `cut` (as_of − inactive_days), the share with no event
    from `cut` to as_of (the window is ignored).

    A customer is churned as of a moment when their latest event up to it is before its cut.
    The events are reduced to each customer's first and latest per part of the timeline (a:
    the first moment at or after them); a part's latest event is the customer's latest up to
    each moment from a until their next part, and churns them from the first of those moments
    whose cut is after it. Their first event ever counts them in the sample from the first
    moment whose cut is after it."""
    _check(scope, ends)
    k = len(ends)
    where, params = scope.filters()
    first, first_params = _first_moment("e.occurred_at", ends)
    cuts = [days_before(at, inactive_days) for at in ends]
    churned, churned_params = position("t_last", cuts, inclusive=True)
    counted, counted_params = position("t_first", cuts, inclusive=True)
    window = "PARTITION BY customer ORDER BY a"
    sql = f"""
        WITH parts AS (
            SELECT customer, a, MIN(t) AS t_first, MAX(t) AS t_last FROM (
                SELECT e.customer_id AS customer, e.occurred_at AS t, {first} AS a
                FROM {EVENTS} e WHERE {where}
            ) e GROUP BY customer, a
        ), spans AS (
            SELECT a, {churned} AS churned_from,
                   COALESCE({_beside("LEAD(a)", window, ends)}, {k}) AS stop,
                   CASE WHEN {_beside("LAG(a)", window, ends)} IS NULL THEN {counted}
                   END AS counted_from
            FROM parts
        )
        SELECT start, stop, COUNT(*), counted_from FROM (
            SELECT {larger("churned_from", "a")} AS start, stop, counted_from FROM spans
        ) counted GROUP BY start, stop, counted_from
    """
    rows = fetchall(sql, [*first_params, *params, *churned_params, *counted_params])
    churned_counts = _spread(((start, stop, n) for start, stop, n, _ in rows), k, 1)
    samples = _spread(((c, k, n) for _, _, n, c in rows), k, 1)
    return [
        wilson(int(churned), int(n))
        for (churned,), (n,) in zip(churned_counts, samples, strict=True)
    ]


def stage_reach(scope: Scope, ends: Ends, stage: str) -> list[Measurement]:
    """Share of the window's active customers with an event of a type mapped to `stage`."""
    _check(scope, ends)
    k = len(ends)
    types = list(
        EventMapping.objects.filter(plan_id=scope.plan_id, stage__name__iexact=stage).values_list(
            "event_type", flat=True
        )
    )
    if not types and not Stage.objects.filter(plan_id=scope.plan_id, name__iexact=stage).exists():
        raise MetricError(f"The plan has no stage “{stage}”.")
    where, params = _windowed(scope, ends, typed=False)
    if types:
        in_stage = f"e.event_type IN ({', '.join(['%s'] * len(types))})"
    else:
        in_stage, types = "1 = 0", []
    if scope.window_days:
        sql, sql_params = _distinct_customers(scope, ends, where, params, in_stage)
        rows = fetchall(sql, [*types, *sql_params])
        active = _spread(((start, stop, n) for start, stop, n, _, _ in rows), k, 1)
        reached = _spread(((flagged, fc, n) for _, _, n, flagged, fc in rows), k, 1)
    else:
        # Active from the first event on, reached from the first event in the stage on.
        start, start_params = _first_moment("t0", ends)
        reached_from, reached_params = _first_moment("reached_at", ends)
        sql = f"""
            SELECT start, reached_from, COUNT(*) FROM (
                SELECT {start} AS start,
                       CASE WHEN reached_at IS NOT NULL THEN {reached_from} END AS reached_from
                FROM (
                    SELECT MIN(e.occurred_at) AS t0,
                           MIN(CASE WHEN {in_stage} THEN e.occurred_at END) AS reached_at
                    FROM {EVENTS} e WHERE {where} GROUP BY e.customer_id
                ) firsts
            ) starts GROUP BY start, reached_from
        """
        rows = fetchall(sql, [*start_params, *reached_params, *types, *params])
        active = _spread(((start, k, n) for start, _, n in rows), k, 1)
        reached = _spread(((flagged, k, n) for _, flagged, n in rows), k, 1)
    return [wilson(int(r), int(n)) for (n,), (r,) in zip(active, reached, strict=True)]


def _valued_parts(scope: Scope, ends: Ends, event_type: str, select: str) -> list[tuple]:
    """Rows (a, c, …select…) over the type's valued events grouped by the moments they count
    for: from a (the first moment at or after them) until c (the first whose window no longer
    holds them; the number of moments without a window). `select` reads `valued` (a, c, v)."""
    where, params = _windowed(scope, ends)
    first, first_params = _first_moment("e.occurred_at", ends)
    stop, stop_params = _window_stop(scope, ends)
    sql = f"""
        WITH valued AS (
            SELECT {first} AS a, {stop} AS c, e.value AS v FROM {EVENTS} e
            WHERE {where} AND e.event_type = %s AND e.value IS NOT NULL
        )
        {select}
    """
    return fetchall(sql, [*first_params, *stop_params, *params, event_type])


def mean_value(scope: Scope, ends: Ends, event_type: str) -> list[Measurement]:
    """Mean of the values of those events in the window, with its interval from the sample
    standard deviation; computed on the stored decimals."""
    _check(scope, ends)
    if exact_squares():
        # numeric arithmetic is exact: counts, sums and sums of squares add up exactly.
        select = "SELECT a, c, COUNT(*), SUM(v), SUM(v * v), 0 FROM valued GROUP BY a, c"
    else:
        # SQLite stores decimals as floating point, Spark rounds long decimal products:
        # deviations from each group's mean, not sums of squares, so that amounts of a million
        # that differ by cents keep their spread.
        select = f"""
            SELECT a, c, COUNT(*), {exact_sum("v")}, NULL, SUM({squared("v - m")}) FROM (
                SELECT a, c, v, AVG(v) OVER (PARTITION BY a, c) AS m FROM valued
            ) centred GROUP BY a, c
        """
    groups = [
        (int(a), int(c), int(n), to_fraction(total), to_fraction(sq), float(dev or 0))
        for a, c, n, total, sq, dev in _valued_parts(scope, ends, event_type, select)
    ]
    out = []
    for j in range(len(ends)):
        moments = Moments()
        for a, c, n, total, exact, squares in groups:
            if a <= j < c:
                moments.add(n, total or Fraction(0), squares, exact)
        out.append(moments.measurement())
    return out


def total_value(scope: Scope, ends: Ends, event_type: str) -> list[Measurement]:
    _check(scope, ends)
    rows = _valued_parts(
        scope, ends, event_type, f"SELECT a, c, {exact_sum('v')} FROM valued GROUP BY a, c"
    )
    totals = _spread(((a, c, to_fraction(total)) for a, c, total in rows), len(ends), 1)
    return [Measurement(float(total), None) for (total,) in totals]


def nps(scope: Scope, ends: Ends, event_type: str = "survey") -> list[Measurement]:
    """Each customer's latest 0–10 score in the window; 100 × (promoters − detractors).

    A score is a customer's latest from its moment until their next one: each is set beside
    the next and counts for the moments in between (and in its window). Two scores of one
    customer at the very same moment: the one stored last counts. Within one import, rows are
    stored in the order of their keys (it fills the unique index faster), so there that order
    is fixed but not the file's."""
    _check(scope, ends)
    k = len(ends)
    where, params = _windowed(scope, ends)
    first, first_params = _first_moment("t", ends)
    stop, stop_params = _window_stop(scope, ends, "t")
    replaced, replaced_params = _first_moment("t_next", ends)
    sql = f"""
        WITH scored AS (
            SELECT e.occurred_at AS t, e.value AS score,
                   LEAD(e.occurred_at) OVER (
                       PARTITION BY e.customer_id ORDER BY e.occurred_at, e.id) AS t_next
            FROM {EVENTS} e
            WHERE {where} AND e.event_type = %s AND e.value IS NOT NULL
              AND e.value >= 0 AND e.value <= 10
        ), spans AS (
            SELECT {first} AS a, {stop} AS c,
                   CASE WHEN t_next IS NULL THEN {k} ELSE {replaced} END AS replaced,
                   CASE WHEN score >= 9 THEN 1 ELSE 0 END AS promoter,
                   CASE WHEN score <= 6 THEN 1 ELSE 0 END AS detractor
            FROM scored
        )
        SELECT a, CASE WHEN replaced < c THEN replaced ELSE c END AS stop,
               COUNT(*), SUM(promoter), SUM(detractor)
        FROM spans GROUP BY a, CASE WHEN replaced < c THEN replaced ELSE c END
    """
    rows = fetchall(sql, [*params, event_type, *first_params, *stop_params, *replaced_params])
    counts = _spread(rows, k, 3)
    return [nps_interval(int(p), int(d), int(n)) for n, p, d in counts]
