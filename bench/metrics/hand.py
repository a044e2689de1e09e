"""The hand-written statements: one per metric, written here independently of the engine.

PostgreSQL's first; then SQLite's, where PostgreSQL's do not run there."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Shape:
    """One test as the metrics see it: what is measured, over which events."""

    metric: str
    params: tuple[tuple[str, Any], ...]
    segment: str
    channel: str
    window_days: int | None

    @property
    def label(self) -> str:
        parts = [f"{k}={v}" for k, v in self.params]
        if self.segment:
            parts.append(f"segment={self.segment}")
        if self.channel:
            parts.append(f"channel={self.channel}")
        if self.window_days:
            parts.append(f"window={self.window_days}d")
        return ", ".join(parts) or "all events"


def where(
    shape: Shape, plan_id: int, as_of: dt.datetime, *, window: bool, typed: bool = True
) -> tuple[str, dict]:
    """`e.` conditions: the plan's filtered events up to as_of, and the window when asked.

    On SQLite, a statement over every type keeps its time bounds off the (plan, type, time)
    index (a unary plus), as anyone who read its query plan would: through that index SQLite
    reads the table in index order, ten times slower than reading it through."""
    from django.db import connection

    time = "e.occurred_at"
    if not typed and connection.vendor == "sqlite":
        time = "+e.occurred_at"
    sql = ["e.plan_id = %(plan)s", f"{time} <= %(as_of)s"]
    args: dict[str, Any] = {"plan": plan_id, "as_of": as_of}
    if shape.segment:
        sql.append("e.segment = %(segment)s")
        args["segment"] = shape.segment
    if shape.channel:
        sql.append("e.channel = %(channel)s")
        args["channel"] = shape.channel
    if window and shape.window_days:
        sql.append(f"{time} > %(window_start)s")
        args["window_start"] = as_of - dt.timedelta(days=shape.window_days)
    return " AND ".join(sql), args


def cohort_bounds(shape: Shape, as_of: dt.datetime, days: int) -> tuple[str, dict]:
    """A first event in the window, and old enough to have had `days` to follow up."""
    sql = "t0 <= %(mature)s"
    args: dict[str, Any] = {"mature": as_of - dt.timedelta(days=days), "hours": days * 24}
    if shape.window_days:
        sql += " AND t0 > %(cohort_start)s"
        args["cohort_start"] = as_of - dt.timedelta(days=shape.window_days)
    return sql, args


def hand_active_customers(shape: Shape, plan_id: int, as_of: dt.datetime) -> tuple[str, dict]:
    params = dict(shape.params)
    sql, args = where(shape, plan_id, as_of, window=True, typed=bool(params.get("event_type")))
    if params.get("event_type"):
        sql += " AND e.event_type = %(type)s"
        args["type"] = params["event_type"]
    return (
        f"SELECT COUNT(*), NULL FROM (SELECT DISTINCT e.customer_id FROM insights_event e WHERE {sql}) d",
        args,
    )


def hand_repeat_rate(shape: Shape, plan_id: int, as_of: dt.datetime) -> tuple[str, dict]:
    # One pass over the type's events: each event next to its customer's first one.
    sql, args = where(shape, plan_id, as_of, window=False)
    params = dict(shape.params)
    cohort, more = cohort_bounds(shape, as_of, params["within_days"])
    args |= more | {"type": params["event_type"]}
    statement = f"""
        WITH typed AS (
            SELECT e.customer_id, e.occurred_at AS t,
                   MIN(e.occurred_at) OVER (PARTITION BY e.customer_id) AS t0
            FROM insights_event e WHERE {sql} AND e.event_type = %(type)s
        ), customers AS (
            SELECT t0, BOOL_OR(t > t0 AND t <= t0 + make_interval(hours => %(hours)s)
                               AND (t AT TIME ZONE 'UTC')::date > (t0 AT TIME ZONE 'UTC')::date)
                       AS came_back
            FROM typed GROUP BY customer_id, t0
        )
        SELECT COUNT(*) FILTER (WHERE came_back), COUNT(*) FROM customers WHERE {cohort}
    """
    return statement, args


def hand_conversion_rate(shape: Shape, plan_id: int, as_of: dt.datetime) -> tuple[str, dict]:
    sql, args = where(shape, plan_id, as_of, window=False)
    params = dict(shape.params)
    cohort, more = cohort_bounds(shape, as_of, params["within_days"])
    args |= more | {"from": params["from_event"], "to": params["to_event"]}
    statement = f"""
        WITH cohort AS (
            SELECT customer_id, t0 FROM (
                SELECT e.customer_id, MIN(e.occurred_at) AS t0 FROM insights_event e
                WHERE {sql} AND e.event_type = %(from)s GROUP BY e.customer_id
            ) firsts WHERE {cohort}
        ), converted AS (
            SELECT DISTINCT c.customer_id FROM cohort c
            JOIN insights_event e ON e.customer_id = c.customer_id
            WHERE {sql} AND e.event_type = %(to)s
              AND e.occurred_at >= c.t0 AND e.occurred_at <= c.t0 + make_interval(hours => %(hours)s)
        )
        SELECT (SELECT COUNT(*) FROM converted), (SELECT COUNT(*) FROM cohort)
    """
    return statement, args


def hand_churn_rate(shape: Shape, plan_id: int, as_of: dt.datetime) -> tuple[str, dict]:
    sql, args = where(shape, plan_id, as_of, window=False)
    args["cut"] = as_of - dt.timedelta(days=dict(shape.params)["inactive_days"])
    statement = f"""
        SELECT COUNT(*) FILTER (WHERE before AND NOT since), COUNT(*) FILTER (WHERE before)
        FROM (SELECT BOOL_OR(e.occurred_at < %(cut)s) AS before,
                     BOOL_OR(e.occurred_at >= %(cut)s) AS since
              FROM insights_event e WHERE {sql} GROUP BY e.customer_id) c
    """
    return statement, args


def hand_stage_reach(shape: Shape, plan_id: int, as_of: dt.datetime) -> tuple[str, dict]:
    sql, args = where(shape, plan_id, as_of, window=True)
    args["stage"] = dict(shape.params)["stage"]
    statement = f"""
        WITH stage_types AS (
            SELECT m.event_type FROM lifecycle_eventmapping m
            JOIN lifecycle_stage s ON s.id = m.stage_id
            WHERE m.plan_id = %(plan)s AND lower(s.name) = lower(%(stage)s)
        )
        SELECT COUNT(*) FILTER (WHERE reached), COUNT(*)
        FROM (SELECT BOOL_OR(e.event_type IN (SELECT event_type FROM stage_types)) AS reached
              FROM insights_event e WHERE {sql} GROUP BY e.customer_id) c
    """
    return statement, args


def hand_mean_value(shape: Shape, plan_id: int, as_of: dt.datetime) -> tuple[str, dict]:
    sql, args = where(shape, plan_id, as_of, window=True)
    args["type"] = dict(shape.params)["event_type"]
    return (
        f"SELECT AVG(e.value), COUNT(e.value) FROM insights_event e "
        f"WHERE {sql} AND e.event_type = %(type)s",
        args,
    )


def hand_total_value(shape: Shape, plan_id: int, as_of: dt.datetime) -> tuple[str, dict]:
    sql, args = where(shape, plan_id, as_of, window=True)
    args["type"] = dict(shape.params)["event_type"]
    return (
        f"SELECT COALESCE(SUM(e.value), 0), NULL FROM insights_event e "
        f"WHERE {sql} AND e.event_type = %(type)s",
        args,
    )


def hand_nps(shape: Shape, plan_id: int, as_of: dt.datetime) -> tuple[str, dict]:
    sql, args = where(shape, plan_id, as_of, window=True)
    args["type"] = dict(shape.params).get("event_type") or "survey"
    statement = f"""
        SELECT 100.0 * (COUNT(*) FILTER (WHERE score >= 9) - COUNT(*) FILTER (WHERE score <= 6))
               / NULLIF(COUNT(*), 0),
               COUNT(*)
        FROM (SELECT DISTINCT ON (e.customer_id) e.value AS score FROM insights_event e
              WHERE {sql} AND e.event_type = %(type)s AND e.value BETWEEN 0 AND 10
              ORDER BY e.customer_id, e.occurred_at DESC, e.id DESC) latest
    """
    return statement, args


HAND: dict[str, Callable[[Shape, int, dt.datetime], tuple[str, dict]]] = {
    "active_customers": hand_active_customers,
    "repeat_rate": hand_repeat_rate,
    "conversion_rate": hand_conversion_rate,
    "churn_rate": hand_churn_rate,
    "stage_reach": hand_stage_reach,
    "mean_value": hand_mean_value,
    "total_value": hand_total_value,
    "nps": hand_nps,
}
PROPORTIONS = {"repeat_rate", "conversion_rate", "churn_rate", "stage_reach"}


# --- the hand-written statements for SQLite, where PostgreSQL's do not run there -------------------


def sqlite_repeat_rate(shape: Shape, plan_id: int, as_of: dt.datetime) -> tuple[str, dict]:
    # The demo's times are whole seconds: datetime() (which drops fractions) is exact here.
    sql, args = where(shape, plan_id, as_of, window=False)
    params = dict(shape.params)
    cohort, more = cohort_bounds(shape, as_of, params["within_days"])
    args |= more | {"type": params["event_type"], "span": f"+{params['within_days']} days"}
    statement = f"""
        WITH typed AS (
            SELECT e.customer_id, e.occurred_at AS t,
                   MIN(e.occurred_at) OVER (PARTITION BY e.customer_id) AS t0
            FROM insights_event e WHERE {sql} AND e.event_type = %(type)s
        ), customers AS (
            SELECT t0, MAX(t > t0 AND t <= datetime(t0, %(span)s) AND date(t) > date(t0))
                       AS came_back
            FROM typed GROUP BY customer_id, t0
        )
        SELECT COUNT(*) FILTER (WHERE came_back), COUNT(*) FROM customers WHERE {cohort}
    """
    return statement, args


def sqlite_conversion_rate(shape: Shape, plan_id: int, as_of: dt.datetime) -> tuple[str, dict]:
    # Each customer's events of the two types side by side: SQLite has no index on customers,
    # so a join from the cohort back to the events would read them once per customer.
    sql, args = where(shape, plan_id, as_of, window=False)
    params = dict(shape.params)
    cohort, more = cohort_bounds(shape, as_of, params["within_days"])
    args |= more | {
        "from": params["from_event"],
        "to": params["to_event"],
        "span": f"+{params['within_days']} days",
    }
    statement = f"""
        WITH typed AS (
            SELECT e.customer_id, e.occurred_at AS t, e.event_type = %(to)s AS is_to,
                   MIN(CASE WHEN e.event_type = %(from)s THEN e.occurred_at END)
                       OVER (PARTITION BY e.customer_id) AS t0
            FROM insights_event e WHERE {sql} AND e.event_type IN (%(from)s, %(to)s)
        ), customers AS (
            SELECT t0, MAX(is_to AND t >= t0 AND t <= datetime(t0, %(span)s)) AS converted
            FROM typed WHERE t0 IS NOT NULL GROUP BY customer_id, t0
        )
        SELECT COUNT(*) FILTER (WHERE converted), COUNT(*) FROM customers WHERE {cohort}
    """
    return statement, args


def sqlite_churn_rate(shape: Shape, plan_id: int, as_of: dt.datetime) -> tuple[str, dict]:
    sql, args = where(shape, plan_id, as_of, window=False, typed=False)
    args["cut"] = as_of - dt.timedelta(days=dict(shape.params)["inactive_days"])
    statement = f"""
        SELECT COUNT(*) FILTER (WHERE before AND NOT since), COUNT(*) FILTER (WHERE before)
        FROM (SELECT MAX(e.occurred_at < %(cut)s) AS before, MAX(e.occurred_at >= %(cut)s) AS since
              FROM insights_event e WHERE {sql} GROUP BY e.customer_id) c
    """
    return statement, args


def sqlite_stage_reach(shape: Shape, plan_id: int, as_of: dt.datetime) -> tuple[str, dict]:
    sql, args = where(shape, plan_id, as_of, window=True, typed=False)
    args["stage"] = dict(shape.params)["stage"]
    statement = f"""
        WITH stage_types AS (
            SELECT m.event_type FROM lifecycle_eventmapping m
            JOIN lifecycle_stage s ON s.id = m.stage_id
            WHERE m.plan_id = %(plan)s AND lower(s.name) = lower(%(stage)s)
        )
        SELECT COUNT(*) FILTER (WHERE reached), COUNT(*)
        FROM (SELECT MAX(e.event_type IN (SELECT event_type FROM stage_types)) AS reached
              FROM insights_event e WHERE {sql} GROUP BY e.customer_id) c
    """
    return statement, args


def sqlite_nps(shape: Shape, plan_id: int, as_of: dt.datetime) -> tuple[str, dict]:
    sql, args = where(shape, plan_id, as_of, window=True)
    args["type"] = dict(shape.params).get("event_type") or "survey"
    statement = f"""
        SELECT 100.0 * (COUNT(*) FILTER (WHERE score >= 9) - COUNT(*) FILTER (WHERE score <= 6))
               / NULLIF(COUNT(*), 0),
               COUNT(*)
        FROM (SELECT e.value AS score,
                     ROW_NUMBER() OVER (PARTITION BY e.customer_id
                                        ORDER BY e.occurred_at DESC, e.id DESC) AS latest
              FROM insights_event e
              WHERE {sql} AND e.event_type = %(type)s AND e.value BETWEEN 0 AND 10) scored
        WHERE latest = 1
    """
    return statement, args


HAND_SQLITE = HAND | {
    "repeat_rate": sqlite_repeat_rate,
    "conversion_rate": sqlite_conversion_rate,
    "churn_rate": sqlite_churn_rate,
    "stage_reach": sqlite_stage_reach,
    "nps": sqlite_nps,
}


def hand_measure(shape: Shape, plan_id: int, as_of: dt.datetime) -> tuple[float | None, int | None]:
    """(value, n) by the hand-written statement: proportions come back as (k, n)."""
    from django.db import connection

    if connection.vendor == "sqlite":
        statement, args = HAND_SQLITE[shape.metric](shape, plan_id, as_of)
        # SQLite compares the stored UTC text: moments as parameters must be written alike.
        args = {
            name: connection.ops.adapt_datetimefield_value(value)
            if isinstance(value, dt.datetime)
            else value
            for name, value in args.items()
        }
    else:
        statement, args = HAND[shape.metric](shape, plan_id, as_of)
    with connection.cursor() as cursor:
        cursor.execute(statement, args)
        first, second = cursor.fetchone()
    if shape.metric in PROPORTIONS:
        return (first / second if second else None), int(second)
    if shape.metric in {"active_customers", "total_value"}:
        return float(first), None
    return (None if first is None else float(first)), int(second)
