"""Per-customer summaries for the lifetime-value models (DOMAIN §9), computed in the database.

One pass over the plan's events of one type up to as_of, after the filters: each customer's
purchase days (their events collapsed to one per UTC calendar day, that day's values summed),
then x, the first and last day, and the mean value of the days after the first.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
from django.db import connection
from numpy.typing import NDArray

from insights.metrics import Scope
from insights.metrics.sql import EVENTS, day, fetchall, moment

WEEK = 7.0


@dataclass(frozen=True)
class Summaries:
    """The kept customers, one entry per customer in each array (ordered by customer id)."""

    customers: list[str]
    x: NDArray[np.float64]  # purchase days − 1
    t_x: NDArray[np.float64]  # weeks from the first purchase day to the last
    T: NDArray[np.float64]  # weeks from the first purchase day to the day of as_of
    # The days after the first that carry a value, and the mean of those values (NaN: none).
    # Without missing values, valued == x.
    valued: NDArray[np.float64]
    m: NDArray[np.float64]
    segments: list[str]

    def __len__(self) -> int:
        return len(self.customers)


def customer_summaries(scope: Scope, event_type: str) -> Summaries:
    """The summaries of the customers with at least one `event_type` event kept by `scope`.

    A customer's segment is the segment of their latest kept event of that type (the last
    stored wins a tie): segments change, and the latest is where the customer is now, which
    is what their future purchases belong to. A day's value is the sum of its events' values,
    NULL when none has one; such days count as purchase days (x) but not for m.
    """
    where, params = scope.filters()
    if scope.segment:
        # Every kept event has that segment: no need to order the events.
        latest_segment = "%s"
        params = [scope.segment, *params]
    else:
        latest_segment = (
            "CASE WHEN ROW_NUMBER() OVER (PARTITION BY e.customer_id"
            " ORDER BY e.occurred_at DESC, e.id DESC) = 1 THEN e.segment END"
        )
    # The days' values summed as stored (exact numeric on PostgreSQL), then read as double
    # precision: they feed a model fitted in floating point. (The SQL is assembled from fixed
    # fragments; every value travels as a parameter.)
    sql = f"""
        WITH kept AS (
            SELECT e.customer_id AS c, {day("e.occurred_at")} AS d, e.value AS v,
                   {latest_segment} AS s
            FROM {EVENTS} e WHERE {where} AND e.event_type = %s
        ), days AS (
            SELECT c, d, SUM(v) AS v, MAX(s) AS s, MIN(d) OVER (PARTITION BY c) AS d0
            FROM kept GROUP BY c, d
        )
        SELECT c, COUNT(*) - 1, MIN(d), MAX(d),
               COUNT(CASE WHEN d > d0 THEN v END),
               CAST(SUM(CASE WHEN d > d0 THEN v END) AS DOUBLE PRECISION),
               MAX(s)
        FROM days GROUP BY c ORDER BY c
    """  # noqa: S608
    rows = fetchall(sql, [*params, event_type])
    if not rows:
        empty = np.zeros(0)
        return Summaries([], empty, empty, empty, empty, empty, [])
    customers, x, first, last, valued, total, segments = zip(*rows, strict=True)
    first_day = _day_numbers(first)
    as_of_day = np.datetime64(scope.as_of.astimezone(dt.UTC).date(), "D")
    valued_days = np.asarray(valued, dtype=np.float64)
    totals = np.array([np.nan if v is None else v for v in total], dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        m = np.where(valued_days > 0, totals / valued_days, np.nan)
    return Summaries(
        customers=list(customers),
        x=np.asarray(x, dtype=np.float64),
        t_x=(_day_numbers(last) - first_day).astype(np.float64) / WEEK,
        T=(as_of_day - first_day).astype(np.float64) / WEEK,
        valued=valued_days,
        m=m,
        segments=[s or "" for s in segments],
    )


def _day_numbers(days: tuple) -> NDArray[np.datetime64]:
    """Calendar days as numpy days: PostgreSQL gives dates, SQLite 'YYYY-MM-DD' text."""
    return np.array(days, dtype="datetime64[D]")


def purchase_days_after(scope: Scope, event_type: str, until: dt.datetime) -> dict[dt.date, int]:
    """For the holdout test: how many of the scope's customers (those with a kept event of
    the type up to as_of) have such an event on each UTC day after the day of as_of, up to
    `until`; a customer's events of one day count once."""
    inside, inside_params = scope.filters(alias="k")
    later, later_params = Scope(scope.plan_id, until, scope.segment, scope.channel).filters()
    as_of_day = connection.ops.adapt_datefield_value(scope.as_of.astimezone(dt.UTC).date())
    sql = f"""
        SELECT d, COUNT(*) FROM (
            SELECT DISTINCT e.customer_id, {day("e.occurred_at")} AS d
            FROM {EVENTS} e
            WHERE {later} AND e.event_type = %s AND e.occurred_at > %s
              AND {day("e.occurred_at")} > %s
              AND e.customer_id IN (
                  SELECT k.customer_id FROM {EVENTS} k WHERE {inside} AND k.event_type = %s)
        ) purchase_days GROUP BY d
    """  # noqa: S608
    params = [*later_params, event_type, moment(scope.as_of), as_of_day, *inside_params]
    rows = fetchall(sql, [*params, event_type])
    return {_as_date(d): int(n) for d, n in rows}


def _as_date(value: dt.date | str) -> dt.date:
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(value)
