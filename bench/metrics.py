"""The metric engine against hand-written SQL: on PostgreSQL with a million events, and on the
SQLite default with the demo.

PostgreSQL (when DATABASE_URL names one): on a scratch database `outside_in_bench_metrics` it
loads ~1,000,000 events of the demo's simulated customers (`insights.demo.generate_events`,
scaled up) with `COPY`, creates the demo plan's 31 tests and 19 more (50 tested assumptions,
every metric), then for each distinct test times `insights.metrics.measure` and a statement
written here, independently, for the same value (best of 3 each, taken in turns; a test above
the target, 1.5x, is timed 10 times more before it is called slow), checks that both give the
same value and n, and prints their ratio. Last, it times `retest_plan` for the whole plan.

SQLite (always): in a temporary var directory, the demo as `load_demo` makes it (its plan file,
insights/data/northwind-fy2027.json, and its ~154,000 events of 10,000 customers over 18 months),
each distinct test of the demo plan against a hand-written SQLite statement (target 2x), then
the plan's histories computed as `load_demo` does, and a re-test of the plan (target < 3 s),
with where its time goes; last, `manage.py retest` of the demo as a command, start-up included.
SQLite runs inside this process, so beside wall times the CPU time of this thread is shown: on a
busy machine it is what the statement costs, while the wall time also holds the wait for a CPU.
The SQLite ratio is judged on CPU time.

Targets are printed next to the figures, never asserted; a value that disagrees makes the run
fail.

    python -m bench metrics                                                # SQLite only
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres python -m bench metrics

BENCH_METRICS_EVENTS changes the number of PostgreSQL events (default 1,000,000).
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import itertools
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

DB_NAME = "outside_in_bench_metrics"
TARGET_RATIO = 1.5
SQLITE_TARGET_RATIO = 2.0
SQLITE_RETEST_TARGET_S = 3.0
REPEATS = 3
# A test above the target is timed again, this many more times, before it is called slow: on a
# busy machine one unlucky moment can double a best of 3.
RECHECK_REPEATS = 10
BASE_DIR = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------------------------------------
# The parent: a scratch database, and a child process that runs Django against it


@contextlib.contextmanager
def scratch_database(url: str, name: str) -> Iterator[str]:
    """A new empty database `name` on the server of `url`; its URL; dropped at the end, always.

    Also used by the board benchmark."""
    import dj_database_url
    import psycopg

    admin = dj_database_url.parse(url)

    def run(statement: str) -> None:
        with psycopg.connect(
            host=admin["HOST"] or None,
            port=admin["PORT"] or None,
            user=admin["USER"] or None,
            password=admin["PASSWORD"] or None,
            dbname=admin["NAME"],
            autocommit=True,
        ) as conn:
            conn.execute(statement)

    run(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    run(f"CREATE DATABASE {name}")
    try:
        yield url.rsplit("/", 1)[0] + "/" + name
    finally:
        run(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def postgres_url(bench: str) -> str | None:
    url = os.environ.get("DATABASE_URL", "")
    if url.startswith(("postgres://", "postgresql://")):
        return url
    print(f"{bench}: skipped, it needs PostgreSQL: DATABASE_URL=postgres://…/postgres")
    return None


def machine() -> str:
    """The CPUs and how busy they are: other work on the machine slows every figure."""
    one, five, _ = os.getloadavg()
    return f"{os.cpu_count()} CPUs, load average {one:.1f} (1 min), {five:.1f} (5 min)"


def main() -> int:
    print(f"machine:     {machine()}")
    status = run_child("--child-sqlite", {"DATABASE_URL": None}, "SQLite")
    url = postgres_url("metrics on PostgreSQL")
    if url is not None:
        with scratch_database(url, DB_NAME) as bench_url:
            status |= run_child("--child", {"DATABASE_URL": bench_url}, "PostgreSQL")
    print(f"machine:     {machine()} (at the end)")
    return status


def run_child(flag: str, database: dict[str, str | None], label: str) -> int:
    """`python -m bench.metrics FLAG` in a temporary var directory, on that database."""
    print()
    print(f"--- {label}", flush=True)
    with tempfile.TemporaryDirectory(prefix="outside-in-bench-metrics-") as tmp:
        env = {
            **os.environ,
            "OUTSIDE_IN_VAR_DIR": tmp,
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
        }
        env.pop("REDIS_URL", None)  # re-tests signal open boards; there are none here
        for name, value in database.items():
            if value is None:
                env.pop(name, None)
            else:
                env[name] = value
        child = subprocess.run(
            [sys.executable, "-m", "bench.metrics", flag], env=env, cwd=BASE_DIR, check=False
        )
    return child.returncode


# ---------------------------------------------------------------------------------------------
# The child: data, tests, timings


def _test(metric: str, params: dict, comparator: str, threshold: Any) -> dict:
    return {"metric": metric, "params": params, "comparator": comparator, "threshold": threshold}


# 19 tests beyond the demo's 31: every metric again, with other filters and windows.
EXTRA_TESTS: list[tuple[str, dict]] = [
    ("Active customers overall", _test("active_customers", {}, ">=", 1)),
    (
        "Premium customers visit",
        _test("active_customers", {"event_type": "visit"}, ">=", 1) | {"segment": "premium"},
    ),
    (
        "Logins last week",
        _test("active_customers", {"event_type": "login"}, ">=", 1) | {"window_days": 7},
    ),
    (
        "Value shoppers buy again in 90 days",
        _test("repeat_rate", {"event_type": "purchase", "within_days": 90}, ">=", 0.2)
        | {"segment": "value"},
    ),
    (
        "Visitors come back within a week",
        _test("repeat_rate", {"event_type": "visit", "within_days": 7}, ">=", 0.2)
        | {"window_days": 30},
    ),
    (
        "Sign-ups buy within 14 days",
        _test(
            "conversion_rate",
            {"from_event": "signup", "to_event": "purchase", "within_days": 14},
            ">=",
            0.3,
        ),
    ),
    (
        "App trials convert",
        _test(
            "conversion_rate",
            {"from_event": "trial_start", "to_event": "purchase", "within_days": 30},
            ">=",
            0.3,
        )
        | {"channel": "app"},
    ),
    (
        "Visitors buy within a week",
        _test(
            "conversion_rate",
            {"from_event": "visit", "to_event": "purchase", "within_days": 7},
            ">=",
            0.1,
        )
        | {"window_days": 30},
    ),
    ("Few go quiet for a month", _test("churn_rate", {"inactive_days": 30}, "<=", 0.5)),
    (
        "Web customers stay within half a year",
        _test("churn_rate", {"inactive_days": 180}, "<=", 0.5) | {"channel": "web"},
    ),
    ("Most customers buy", _test("stage_reach", {"stage": "Buy"}, ">=", 0.5)),
    (
        "Prospects discover us",
        _test("stage_reach", {"stage": "Discover"}, ">=", 0.2)
        | {"segment": "prospect", "window_days": 30},
    ),
    ("Surveys average 7", _test("mean_value", {"event_type": "survey"}, ">=", 7)),
    (
        "Premium baskets over the year",
        _test("mean_value", {"event_type": "purchase"}, ">=", 120)
        | {"segment": "premium", "window_days": 365},
    ),
    ("Revenue ever", _test("total_value", {"event_type": "purchase"}, ">=", 1)),
    (
        "Store revenue last month",
        _test("total_value", {"event_type": "purchase"}, ">=", 1)
        | {"channel": "store", "window_days": 30},
    ),
    ("Returns stay small", _test("total_value", {"event_type": "return"}, "<=", 10**9)),
    ("App users recommend us", _test("nps", {}, ">=", 20) | {"channel": "app", "window_days": 90}),
    (
        "Value shoppers recommend us",
        _test("nps", {"event_type": "survey"}, ">=", 20) | {"segment": "value"},
    ),
]


def bench_plan() -> dict:
    """The demo plan with one more choice whose assumptions bring it to 50 tests."""
    from insights.demo import DEMO_PLAN

    plan = copy.deepcopy(DEMO_PLAN)
    plan["slug"] = "bench-metrics"
    plan["retest_schedule"] = {"cadence": "off"}
    extra = []
    for statement, test in EXTRA_TESTS:
        test = {"min_sample": 30, "segment": None, "channel": None, "window_days": None} | test
        extra.append(
            {"statement": statement, "importance": 3, "evidence": 1, "owner": "elena", "test": test}
        )
    plan["choices"].append(
        {
            "title": "Benchmark: more tests",
            "stages": ["Buy"],
            "owner": "elena",
            "assumptions": extra,
        }
    )
    return plan


def load_events(plan_id: int, rows: int, *, months: int | None = None) -> tuple[int, float]:
    """The demo's simulated customers, as many as make `rows` events, through one COPY.

    The demo's 18 months, or stretched back from its end over `months` (same customers and
    order of events, longer gaps): a history bench wants more periods."""
    from django.db import connection, transaction

    from insights import demo
    from insights.models import Event

    def when(at: dt.datetime) -> dt.datetime:
        if months is None:
            return at
        stretched = demo.END - (demo.END - at) * (months / 18)
        return stretched.replace(microsecond=0)

    columns = (
        "plan_id, customer_id, occurred_at, event_type, value, segment, channel, event_id, "
        "attributes, dedupe_key"
    )
    started = time.perf_counter()
    count = 0
    with transaction.atomic(), connection.cursor() as cursor:
        with cursor.copy(f"COPY insights_event ({columns}) FROM STDIN") as out:
            for event in itertools.islice(demo.generate_events(customers=10**9), rows):
                key = Event.identity(event.event_id, {}, 0)  # as an import keys it
                out.write_row(
                    (
                        plan_id,
                        event.customer_id,
                        when(event.occurred_at),
                        event.event_type,
                        event.value,
                        event.segment,
                        event.channel,
                        event.event_id,
                        "{}",
                        key,
                    )
                )
                count += 1
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE insights_event")
    return count, time.perf_counter() - started


# --- the hand-written statements: one per metric, PostgreSQL only ---------------------------------


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


@dataclass
class Timing:
    """A run's best wall time and best CPU time (this thread's: SQLite runs in it) of its turns."""

    wall: float = math.inf
    cpu: float = math.inf

    def add(self, wall: float, cpu: float) -> None:
        self.wall, self.cpu = min(self.wall, wall), min(self.cpu, cpu)


def best_of_each(*runs: Callable[[], Any], repeats: int = REPEATS) -> list[tuple[Timing, Any]]:
    """Each run's best time of `repeats`, taken in turns so that a busy moment of the machine
    falls on all of them alike; with each run's last result."""
    best = [Timing() for _ in runs]
    results: list[Any] = [None] * len(runs)
    for _ in range(repeats):
        for i, run in enumerate(runs):
            cpu, started = time.thread_time(), time.perf_counter()
            results[i] = run()
            best[i].add(time.perf_counter() - started, time.thread_time() - cpu)
    return list(zip(best, results, strict=True))


def agree(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


def shape_of(assumption: Any) -> Shape:
    from planning.models import clean_metric_params

    params = clean_metric_params(assumption.metric, assumption.params)
    return Shape(
        assumption.metric,
        tuple(sorted(params.items())),
        assumption.segment,
        assumption.channel,
        assumption.window_days,
    )


@dataclass
class Row:
    shape: Shape
    assumption: Any
    engine: Timing
    hand: Timing
    verdict: str
    same: bool
    by_cpu: bool  # judged on CPU time (SQLite, in this process) rather than wall time

    @property
    def ratio(self) -> float:
        if self.by_cpu:
            return self.engine.cpu / max(self.hand.cpu, 1e-6)
        return self.engine.wall / self.hand.wall

    def figures(self) -> str:
        text = (
            f"{self.engine.wall * 1000:>7.1f}ms {self.hand.wall * 1000:>7.1f}ms "
            f"{self.engine.wall / self.hand.wall:>5.2f}x"
        )
        if self.by_cpu:
            text += (
                f"  {self.engine.cpu * 1000:>7.1f}ms {self.hand.cpu * 1000:>7.1f}ms "
                f"{self.ratio:>5.2f}x"
            )
        return text


def setup(rows: int, *, months: int | None = None) -> Any:
    """The migrated scratch database with the plan and its events; the plan.

    Also used by the history benchmark."""
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from planning.planfile import import_plan

    call_command("migrate", verbosity=0)
    plan_data = bench_plan()
    for member in plan_data["members"]:  # the plan file names existing users
        get_user_model().objects.get_or_create(username=member["username"])
    plan, _ = import_plan(plan_data)
    count, seconds = load_events(plan.pk, rows, months=months)
    span = f" over {months} months" if months else ""
    print(
        f"events:      {count:,} in one plan{span}, generated and COPY'd in {seconds:.1f}s "
        f"({count / seconds:,.0f} rows/s), then ANALYZE"
    )
    return plan


def compare(plan: Any, as_of: dt.datetime, target: float, *, by_cpu: bool) -> list[Row]:
    """Each distinct test of the plan: the engine and the hand-written statement, timed."""
    from insights.metrics import measure
    from insights.services.retests import tested_assumptions

    assumptions = list(tested_assumptions(plan))
    print(
        f"tests:       {len(assumptions)} tested assumptions, as of {as_of:%Y-%m-%d %H:%M:%S} UTC"
    )
    judged = "CPU" if by_cpu else "wall"
    print(
        f"timings:     best of {REPEATS}, taken in turns; ratio = engine / hand-written SQL "
        f"({judged} time), target ≤ {target}x (!: above it)"
    )
    print()
    header = f"{'metric':<17} {'test':<56} {'engine':>9} {'hand SQL':>9} {'ratio':>6}"
    if by_cpu:
        header += f"  {'CPU':>9} {'hand CPU':>9} {'ratio':>6}"
    header += "    values"
    print(header)
    print("-" * (len(header) + 24))
    rows: list[Row] = []
    seen: set[Shape] = set()
    for assumption in assumptions:
        shape = shape_of(assumption)
        if shape in seen:
            continue
        seen.add(shape)
        (engine, m), (hand, (value, n)) = best_of_each(
            partial(measure, assumption, plan.pk, as_of),
            partial(hand_measure, shape, plan.pk, as_of),
        )
        same = agree(m.value, value) and m.n == n
        verdict = (
            f"agree ({_fmt(value)}, n={n if n is not None else '—'})"
            if same
            else f"MISMATCH: engine {_fmt(m.value)} n={m.n}, hand-written {_fmt(value)} n={n}"
        )
        row = Row(shape, assumption, engine, hand, verdict, same, by_cpu)
        rows.append(row)
        flag = "" if row.ratio <= target else "!"
        print(
            f"{shape.metric:<17} {shape.label[:56]:<56} {row.figures()} {flag:<1}  {verdict}",
            flush=True,
        )
    return rows


def recheck(rows: list[Row], plan: Any, as_of: dt.datetime, target: float) -> None:
    """Time the tests above the target again; each keeps its best time of all the turns."""
    from insights.metrics import measure

    slow = [row for row in rows if row.ratio > target]
    if not slow:
        return
    print()
    print(f"above the target, timed again (best of {REPEATS + RECHECK_REPEATS} in all):")
    for row in slow:
        (engine, _), (hand, _) = best_of_each(
            partial(measure, row.assumption, plan.pk, as_of),
            partial(hand_measure, row.shape, plan.pk, as_of),
            repeats=RECHECK_REPEATS,
        )
        row.engine.add(engine.wall, engine.cpu)
        row.hand.add(hand.wall, hand.cpu)
        flag = "" if row.ratio <= target else "!"
        print(
            f"  {row.shape.metric:<17} {row.shape.label[:56]:<56} {row.figures()} {flag}",
            flush=True,
        )


def summarise(rows: list[Row], target: float) -> None:
    print()
    judged = "CPU" if rows and rows[0].by_cpu else "wall"
    print(f"per metric, the worst ratio ({judged} time; target ≤ {target}x):")
    for metric in HAND:
        mine = [row for row in rows if row.shape.metric == metric]
        if not mine:
            continue
        worst = max(mine, key=lambda row: row.ratio)
        engine, hand = (
            (worst.engine.cpu, worst.hand.cpu)
            if worst.by_cpu
            else (worst.engine.wall, worst.hand.wall)
        )
        print(
            f"  {metric:<17} {worst.ratio:>5.2f}x  {_met(worst.ratio <= target):<8} "
            f"{engine * 1000:>6.1f} vs {hand * 1000:.1f} ms "
            f"({len(mine)} tests; worst: {worst.shape.label})"
        )
    for what in ("wall", "cpu") if judged == "CPU" else ("wall",):
        engine_s = sum(getattr(row.engine, what) for row in rows)
        hand_s = sum(getattr(row.hand, what) for row in rows)
        print(
            f"  all {len(rows)} tests  {engine_s / hand_s:>5.2f}x  "
            f"{engine_s:.2f}s engine vs {hand_s:.2f}s hand-written, summed ({what} time)"
        )
    print()


def time_retests(plan: Any) -> float:
    """The whole plan re-tested, as a schedule does: first every verdict is new, then none;
    where the time goes; the better of the two wall times."""
    from insights.services import retests

    note_drift = retests.note_drift
    spent: list[float] = []

    def timed_note_drift(*args: Any, **kwargs: Any) -> None:
        started = time.perf_counter()
        try:
            note_drift(*args, **kwargs)
        finally:
            spent.append(time.perf_counter() - started)

    best = math.inf
    retests.note_drift = timed_note_drift  # type: ignore[assignment]
    try:
        for what in ("first re-test (every verdict new)", "again (no verdict changes)"):
            spent.clear()
            cpu, started = time.thread_time(), time.perf_counter()
            runs = retests.retest_plan(plan)
            seconds, cpu = time.perf_counter() - started, time.thread_time() - cpu
            best = min(best, seconds)
            statuses: dict[str, int] = {}
            for run in runs:
                statuses[run.status] = statuses.get(run.status, 0) + 1
            metrics_s = sum(run.duration_ms for run in runs) / 1000
            print(
                f"retest_plan: {seconds:.2f}s for {len(runs)} assumptions "
                f"({seconds / len(runs) * 1000:.0f} ms each, {cpu:.2f}s CPU): {what}"
            )
            print(
                f"  of which   metrics {metrics_s:.2f}s, histories (computed where missing, "
                f"else looked up) {sum(spent):.2f}s, the rest (runs, verdicts, activity, "
                f"commits) {seconds - metrics_s - sum(spent):.2f}s"
            )
    finally:
        retests.note_drift = note_drift  # type: ignore[assignment]
    print(f"  statuses:  {json.dumps(statuses)}")
    return best


def report_values(rows: list[Row]) -> int:
    mismatches = sum(not row.same for row in rows)
    if mismatches:
        print(
            f"MISMATCH: on {mismatches} test(s) the engine and the hand-written SQL disagree; "
            "see the rows above"
        )
        return 1
    print("values:      the engine and the hand-written SQL agree on every test")
    return 0


def _child() -> int:
    import django

    django.setup()
    from insights.metrics import latest_event_at

    plan = setup(int(os.environ.get("BENCH_METRICS_EVENTS", "1000000")))
    as_of = latest_event_at(plan.pk)
    assert as_of is not None
    rows = compare(plan, as_of, TARGET_RATIO, by_cpu=False)
    recheck(rows, plan, as_of, TARGET_RATIO)
    summarise(rows, TARGET_RATIO)
    time_retests(plan)
    return report_values(rows)


# --- SQLite: the demo, as `load_demo` makes it ----------------------------------------------------


def setup_demo() -> Any:
    """The demo plan and its events, as `load_demo` stores them (without its re-test)."""
    from django.core.management import call_command
    from django.db import transaction

    from insights import demo
    from planning.planfile import import_plan, load_plan_file

    call_command("migrate", verbosity=0)
    demo.ensure_demo_users(published_password=True)
    started = time.perf_counter()
    with transaction.atomic():
        plan, _ = import_plan(load_plan_file(demo.DEMO_PLAN_FILE), actor=None)
        count = demo.store_events(plan, demo.generate_events(), [])
    demo.analyze_events()
    print(
        f"events:      {count:,} of {demo.DEMO_CUSTOMERS:,} customers in the demo plan "
        f"{plan.slug}, stored as load_demo does in {time.perf_counter() - started:.1f}s"
    )
    return plan


def time_histories(plan: Any) -> None:
    """Every tested assumption's history, computed as `load_demo` does (from scratch)."""
    from insights.services.history import compute_plan_history

    cpu, started = time.thread_time(), time.perf_counter()
    histories = compute_plan_history(plan)
    seconds, cpu = time.perf_counter() - started, time.thread_time() - cpu
    moments = max(len(history.points) for history in histories)
    print(
        f"histories:   {seconds:.2f}s ({cpu:.2f}s CPU) for {len(histories)} assumptions, "
        f"{moments} moments each, computed from scratch"
    )
    slowest = sorted(histories, key=lambda history: -history.duration_ms)[:3]
    print(
        "  slowest:   "
        + "; ".join(
            f"{history.assumption.metric} {history.duration_ms} ms ({history.test.get('params')}, "
            f"window {history.test.get('window_days')})"
            for history in slowest
        )
    )


def time_command(slug: str) -> None:
    """`manage.py retest SLUG` as a command, and a command that stops right after start-up."""
    for args, what in (
        (["retest", "no-such-plan"], "start-up alone (`manage.py retest` of a missing plan)"),
        (["retest", slug], f"`manage.py retest {slug}`"),
    ):
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=BASE_DIR,
            check=False,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        print(f"command:     {time.perf_counter() - started:.2f}s: {what}")


def _child_sqlite() -> int:
    import django

    django.setup()
    from insights.metrics import latest_event_at

    plan = setup_demo()
    as_of = latest_event_at(plan.pk)
    assert as_of is not None
    rows = compare(plan, as_of, SQLITE_TARGET_RATIO, by_cpu=True)
    recheck(rows, plan, as_of, SQLITE_TARGET_RATIO)
    summarise(rows, SQLITE_TARGET_RATIO)
    time_histories(plan)
    best = time_retests(plan)
    print(
        f"re-test:     {best:.2f}s, the better of the two (target < {SQLITE_RETEST_TARGET_S:.0f} s): "
        f"{_met(best < SQLITE_RETEST_TARGET_S)}"
    )
    time_command(plan.slug)
    return report_values(rows)


def _fmt(value: float | None) -> str:
    if value is None:
        return "none"
    return f"{value:,.4f}" if abs(value) < 1000 else f"{value:,.2f}"


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        sys.exit(_child())
    if sys.argv[1:2] == ["--child-sqlite"]:
        sys.exit(_child_sqlite())
    sys.exit(main())
