"""The Customers figures (DOMAIN §8) against hand-written SQL: PostgreSQL on a million events,
SQLite on the demo's data.

PostgreSQL: on a scratch database `outside_in_bench_customers`, ~1,000,000 events of the demo's
simulated customers loaded with `COPY` (bench.metrics' loader) into the demo plan. SQLite: a
scratch database file with the demo's own events (`insights.demo.generate_events()`, ~154k).
On each, every figure of `insights.services.customers` — the periods (composition and stage
reach), cohort retention, the funnel; per month and per ISO week, with and without filters — is
timed against a statement written here, independently and the plain way (self-joins where the
service uses window functions), for the same numbers: best of 3 each, taken in turns. Both must
give the same numbers, or the run fails; the ratio is printed beside a target of 2x, never
asserted.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres python -m bench customers

BENCH_CUSTOMERS_EVENTS changes the number of PostgreSQL events (default 1,000,000). Without a
PostgreSQL DATABASE_URL only the SQLite half runs.
"""

from __future__ import annotations

import copy
import datetime as dt
import itertools
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from bench.metrics import BASE_DIR, machine, scratch_database
from bench.timing import Timing, best_of_each

DB_NAME = "outside_in_bench_customers"
TARGET_RATIO = 2.0
REPEATS = 3
RECHECK_REPEATS = 5


# ---------------------------------------------------------------------------------------------
# The parent: one child process per database


def main() -> int:
    print(f"machine:     {machine()}")
    status = 0
    url = os.environ.get("DATABASE_URL", "")
    if url.startswith(("postgres://", "postgresql://")):
        with scratch_database(url, DB_NAME) as bench_url:
            status |= _run_child("postgresql", {"DATABASE_URL": bench_url})
    else:
        print("customers:   PostgreSQL skipped, it needs DATABASE_URL=postgres://…/postgres")
    status |= _run_child("sqlite", {})
    print(f"machine:     {machine()} (at the end)")
    return status


def _run_child(database: str, extra: dict[str, str]) -> int:
    print(f"\n--- {database}", flush=True)
    with tempfile.TemporaryDirectory(prefix="outside-in-bench-customers-") as tmp:
        env = {
            **os.environ,
            "OUTSIDE_IN_VAR_DIR": tmp,  # SQLite: a scratch database file of its own
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
            **extra,
        }
        env.pop("REDIS_URL", None)
        if not extra:
            env.pop("DATABASE_URL", None)
        child = subprocess.run(
            [sys.executable, "-m", "bench.customers", "--child", database],
            env=env,
            cwd=BASE_DIR,
            check=False,
        )
    return child.returncode


# ---------------------------------------------------------------------------------------------
# The child: data, then each figure against its hand-written statement


def _setup(database: str) -> Any:
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from bench.metrics.postgres import load_events
    from insights.demo import DEMO_PLAN
    from planning.planfile import import_plan

    call_command("migrate", verbosity=0)
    data = copy.deepcopy(DEMO_PLAN)
    data["slug"], data["retest_schedule"], data["choices"] = (
        "bench-customers",
        {"cadence": "off"},
        [],
    )
    data["bt_initiatives"] = []
    for member in data["members"]:  # the plan file names existing users
        get_user_model().objects.get_or_create(username=member["username"])
    plan, _ = import_plan(data)
    if database == "postgresql":
        rows = int(os.environ.get("BENCH_CUSTOMERS_EVENTS", "1000000"))
        count, seconds = load_events(plan.pk, rows)
        how = "COPY'd"
    else:
        count, seconds = _load_demo(plan.pk)
        how = "bulk-inserted"
    print(
        f"events:      {count:,} in one plan, generated and {how} in {seconds:.1f}s, then ANALYZE"
    )
    return plan


def _load_demo(plan_id: int) -> tuple[int, float]:
    """The demo's own events (all of `generate_events()`), inserted in batches as the ORM
    would store them (executemany: bulk_create's objects cost more than the rows)."""
    from django.db import connection, transaction

    from insights import demo
    from insights.metrics.sql import moment
    from insights.models import Event

    columns = (
        "plan_id, customer_id, occurred_at, event_type, value, segment, channel, event_id, "
        "attributes, dedupe_key"
    )
    insert = f"INSERT INTO insights_event ({columns}) VALUES ({', '.join(['%s'] * 10)})"
    ops = connection.ops
    started = time.perf_counter()
    count = 0
    with transaction.atomic(), connection.cursor() as cursor:
        for batch in itertools.batched(demo.generate_events(), 5000):
            cursor.executemany(
                insert,
                [
                    (
                        plan_id,
                        e.customer_id,
                        moment(e.occurred_at),
                        e.event_type,
                        ops.adapt_decimalfield_value(e.value, 20, 6),
                        e.segment,
                        e.channel,
                        e.event_id,
                        "{}",
                        Event.identity(e.event_id, {}, 0).hex,
                    )
                    for e in batch
                ],
            )
            count += len(batch)
        cursor.execute("ANALYZE insights_event")
    return count, time.perf_counter() - started


# --- the hand-written statements ---------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One figure to time: which, per which period, over which events."""

    figure: str  # periods, cohorts, funnel
    period: str
    segment: str = ""
    channel: str = ""
    event_type: str = "purchase"
    window_days: int = 30

    @property
    def label(self) -> str:
        parts = [self.period]
        if self.figure == "cohorts":
            parts.append(self.event_type)
        if self.figure == "funnel":
            parts.append(f"{self.window_days} days")
        if self.segment:
            parts.append(f"segment={self.segment}")
        if self.channel:
            parts.append(f"channel={self.channel}")
        return ", ".join(parts)


CASES = [
    Case("periods", "month"),
    Case("periods", "week"),
    Case("periods", "month", segment="premium"),
    Case("cohorts", "month"),
    Case("cohorts", "week"),
    Case("cohorts", "month", channel="app", event_type="visit"),
    Case("funnel", "month"),
    Case("funnel", "month", window_days=90, channel="web"),
]


def _dialect() -> str:
    from django.db import connection

    return connection.vendor


def _period(column: str, period: str) -> str:
    """The first day of the UTC month or ISO week, as the database writes a date."""
    if _dialect() == "postgresql":
        return f"date_trunc('{period}', {column} AT TIME ZONE 'UTC')::date"
    if period == "week":
        return f"date(substr({column}, 1, 10), 'weekday 0', '-6 days')"
    return f"(substr({column}, 1, 7) || '-01')"


def _shift(column: str, period: str, n: int) -> str:
    """The start of the period n periods after the one starting on `column`."""
    if _dialect() == "postgresql":
        unit = "week" if period == "week" else "month"
        return f"({column} + interval '{n} {unit}')::date"
    return f"date({column}, '{n * 7 if period == 'week' else n} {'days' if period == 'week' else 'months'}')"


def _plus_window(column: str, days: int) -> str:
    if _dialect() == "postgresql":
        return f"({column} + make_interval(hours => {days * 24}))"
    return f"(date(substr({column}, 1, 10), '+{days} days') || substr({column}, 11))"


def _kept(case: Case, plan_id: int, as_of: dt.datetime, alias: str = "e") -> tuple[str, list]:
    from insights.metrics.sql import moment

    sql = f"{alias}.plan_id = %s AND {alias}.occurred_at <= %s"
    params: list[Any] = [plan_id, moment(as_of)]
    if case.segment:
        sql += f" AND {alias}.segment = %s"
        params.append(case.segment)
    if case.channel:
        sql += f" AND {alias}.channel = %s"
        params.append(case.channel)
    return sql, params


def _in(types: list[str]) -> tuple[str, list[str]]:
    return (f"IN ({', '.join(['%s'] * len(types))})", types) if types else ("IN (NULL)", [])


def hand_periods(case: Case, plan_id: int, as_of: dt.datetime, stages: list) -> dict:
    """Per period start: active, new, returning, dormant and each stage's customers; self-joins
    of the (customer, period) pairs with the period before and after."""
    where, params = _kept(case, plan_id, as_of)
    flags, flag_params = "", []
    for number, (_, types) in enumerate(stages):
        in_stage, more = _in(types)
        flags += f", MAX(CASE WHEN e.event_type {in_stage} THEN 1 ELSE 0 END) AS s{number}"
        flag_params += more
    sums = "".join(f", SUM(a.s{n})" for n in range(len(stages)))
    sql = f"""
        WITH a AS (
            SELECT e.customer_id, {_period("e.occurred_at", case.period)} AS p {flags}
            FROM insights_event e WHERE {where} GROUP BY 1, 2
        ), f AS (SELECT customer_id, MIN(p) AS p0 FROM a GROUP BY customer_id)
        SELECT a.p, COUNT(*), COUNT(*) FILTER (WHERE f.p0 = a.p),
               COUNT(*) FILTER (WHERE b.customer_id IS NOT NULL),
               COUNT(*) FILTER (WHERE n.customer_id IS NULL) {sums}
        FROM a JOIN f ON f.customer_id = a.customer_id
        LEFT JOIN a b ON b.customer_id = a.customer_id AND b.p = {_shift("a.p", case.period, -1)}
        LEFT JOIN a n ON n.customer_id = a.customer_id AND n.p = {_shift("a.p", case.period, 1)}
        GROUP BY a.p
    """
    out: dict[str, list[int]] = {}
    leaving: dict[str, int] = {}
    for p, active, new, returning, gone, *reached in _fetch(sql, [*flag_params, *params]):
        resurrecting = active - new - returning
        out[str(p)] = [active, new, returning, 0, resurrecting, *(int(r) for r in reached)]
        leaving[_next_start(str(p), case.period)] = gone
    # Dormant in a period: gone after the one before; no period comes after as_of's.
    last = _as_of_start(as_of, case.period)
    for p, gone in leaving.items():
        if p <= last:
            out.setdefault(p, [0] * (5 + len(stages)))[3] = gone
    return out


def _as_of_start(as_of: dt.datetime, period: str) -> str:
    day = as_of.astimezone(dt.UTC).date()
    if period == "week":
        return (day - dt.timedelta(days=day.weekday())).isoformat()
    return day.replace(day=1).isoformat()


def _next_start(start: str, period: str) -> str:
    day = dt.date.fromisoformat(start)
    if period == "week":
        return (day + dt.timedelta(days=7)).isoformat()
    return dt.date(day.year + day.month // 12, day.month % 12 + 1, 1).isoformat()


def hand_cohorts(case: Case, plan_id: int, as_of: dt.datetime, stages: list) -> dict:
    """(cohort start, period start) → customers of the cohort with a T event in that period."""
    where, params = _kept(case, plan_id, as_of)
    sql = f"""
        WITH t AS (
            SELECT DISTINCT e.customer_id, {_period("e.occurred_at", case.period)} AS p
            FROM insights_event e WHERE {where} AND e.event_type = %s
        ), c AS (SELECT customer_id, MIN(p) AS c0 FROM t GROUP BY customer_id)
        SELECT c.c0, t.p, COUNT(*) FROM t JOIN c ON c.customer_id = t.customer_id GROUP BY 1, 2
    """
    return {(str(c0), str(p)): n for c0, p, n in _fetch(sql, [*params, case.event_type])}


def hand_funnel(case: Case, plan_id: int, as_of: dt.datetime, stages: list) -> list[int]:
    """Entrants, then each step joined to the one before: the earliest event of the step's
    stage at or after it and within the window."""
    from insights.metrics.sql import days_before, moment

    where, params = _kept(case, plan_id, as_of)
    all_types = [t for _, types in stages for t in types]
    in_all, all_params = _in(all_types)
    in_first, first_params = _in(stages[0][1])
    steps, step_params = [], []
    for number, (_, types) in enumerate(stages[1:], start=2):
        in_step, more = _in(types)
        before = "s1.t1" if number == 2 else f"s{number - 1}.t"
        source = "s1" if number == 2 else f"s{number - 1}"
        steps.append(
            f"""s{number} AS (
                SELECT {source}.customer_id, {source}.t1, MIN(v.t) AS t
                FROM {source} JOIN ev v ON v.customer_id = {source}.customer_id
                WHERE v.event_type {in_step} AND v.t >= {before}
                  AND v.t <= {_plus_window(f"{source}.t1", case.window_days)}
                GROUP BY 1, 2)"""
        )
        step_params += more
    counts = ", ".join(f"(SELECT COUNT(*) FROM s{n})" for n in range(1, len(stages) + 1))
    sql = f"""
        WITH ev AS (
            SELECT e.customer_id, e.occurred_at AS t, e.event_type FROM insights_event e
            WHERE {where} AND e.event_type {in_all}
        ), s1 AS (
            SELECT customer_id, MIN(t) AS t1 FROM ev WHERE event_type {in_first}
            GROUP BY customer_id HAVING MIN(t) <= %s
        ){"".join(", " + s for s in steps)}
        SELECT {counts}
    """
    mature = moment(days_before(as_of, case.window_days))
    (row,) = _fetch(sql, [*params, *all_params, *first_params, mature, *step_params])
    return [int(n) for n in row]


def _fetch(sql: str, params: list) -> list[tuple]:
    from insights.metrics.sql import fetchall

    return fetchall(sql, params)


HAND: dict[str, Callable[..., Any]] = {
    "periods": hand_periods,
    "cohorts": hand_cohorts,
    "funnel": hand_funnel,
}


# --- the service's figures, in the hand-written statements' shape -------------------------------


def service(case: Case, plan: Any, as_of: dt.datetime, stages: list) -> Any:
    from insights.metrics import Scope
    from insights.services import customers

    frame = customers.Frame(Scope(plan.pk, as_of, case.segment, case.channel), case.period)
    if case.figure == "periods":
        return customers.period_figures(frame, stages)
    if case.figure == "cohorts":
        return customers.cohort_retention(frame, case.event_type)
    return customers.funnel(frame, [s for s in stages if s[1]], case.window_days)


def same(case: Case, got: Any, hand: Any) -> bool:
    """The service's figures and the hand-written statement's numbers are the same."""
    if case.figure == "periods":
        mine = {
            p.start.isoformat(): [p.active, p.new, p.returning, p.dormant, p.resurrecting]
            + [r.customers for r in p.stage_reach.values()]
            for p in got
            if p.active or p.dormant
        }
        return mine == {p: v for p, v in hand.items() if v[0] or v[3]}
    if case.figure == "cohorts":
        mine = {}
        for cohort in got:
            mine[cohort.start.isoformat(), cohort.start.isoformat()] = cohort.size
            start = cohort.start.isoformat()
            for cell in cohort.retention:
                start = _next_start(start, case.period)
                if cell.retained.customers:
                    mine[cohort.start.isoformat(), start] = cell.retained.customers
        return mine == hand
    return [step.reached.customers for step in got.steps] == hand


def run_cases(plan: Any, as_of: dt.datetime) -> bool:
    from django.db import connection

    from insights.services.customers import compute_customers, stage_types

    in_process = connection.vendor == "sqlite"
    stages = stage_types(plan.pk)
    print(
        f"timings:     best of {REPEATS}, in turns; ratio = service / hand-written SQL, "
        f"target ≤ {TARGET_RATIO}x (!: above it); as of {as_of:%Y-%m-%d %H:%M:%S} UTC"
    )
    if in_process:
        print("             SQLite runs in this process: its CPU time is shown too (cpu ratio)")
    header = (
        f"{'figure':<8} {'case':<36} {'service':>9} {'hand SQL':>9} {'ratio':>6}  "
        f"{'cpu ratio':>9}  values"
    )
    print(header)
    print("-" * (len(header) + 40))
    all_same, slow = True, []
    for case in CASES:
        runs = _runs(case, plan, as_of, stages)
        (mine, got), (hand, theirs) = best_of_each(*runs, repeats=REPEATS)
        ok = same(case, got, theirs)
        all_same &= ok
        if _ratio(mine, hand, in_process) > TARGET_RATIO:
            slow.append((case, mine, hand))
        _print_row(case, mine, hand, in_process, _summary(case, got) if ok else "MISMATCH")
    if slow:
        print(f"\nabove the target, timed again (best of {REPEATS + RECHECK_REPEATS} in all):")
        for case, mine, hand in slow:
            (again, _), (hand_again, _) = best_of_each(
                *_runs(case, plan, as_of, stages), repeats=RECHECK_REPEATS
            )
            mine.add(again.wall, again.cpu)
            hand.add(hand_again.wall, hand_again.cpu)
            _print_row(case, mine, hand, in_process, "")
    for period in ("month", "week"):
        started = time.perf_counter()
        compute_customers(plan, period=period)
        print(
            f"\ncompute_customers (every figure, per {period}): "
            f"{time.perf_counter() - started:.2f}s",
            end="",
        )
    print()
    return all_same


def _runs(case: Case, plan: Any, as_of: dt.datetime, stages: list) -> tuple[Callable, Callable]:
    mine = [s for s in stages if s[1]] if case.figure == "funnel" else stages
    return (
        partial(service, case, plan, as_of, stages),
        partial(HAND[case.figure], case, plan.pk, as_of, mine),
    )


def _ratio(mine: Timing, hand: Timing, in_process: bool) -> float:
    """Wall time on PostgreSQL; on SQLite the better of wall and CPU time (a busy machine's
    other work lands in the wall time, not in this thread's CPU time)."""
    wall = mine.wall / hand.wall
    return min(wall, mine.cpu / hand.cpu) if in_process and hand.cpu > 0 else wall


def _print_row(case: Case, mine: Timing, hand: Timing, in_process: bool, values: str) -> None:
    ratio = mine.wall / hand.wall
    cpu = f"{mine.cpu / hand.cpu:>8.2f}x" if in_process and hand.cpu > 0 else f"{'—':>9}"
    flag = "" if _ratio(mine, hand, in_process) <= TARGET_RATIO else "!"
    print(
        f"{case.figure:<8} {case.label:<36} {mine.wall * 1000:>7.0f}ms {hand.wall * 1000:>7.0f}ms "
        f"{ratio:>5.2f}x  {cpu} {flag:<1} {values}",
        flush=True,
    )


def _summary(case: Case, got: Any) -> str:
    if case.figure == "periods":
        return f"agree: {len(got)} periods, {sum(p.new for p in got):,} customers"
    if case.figure == "cohorts":
        return f"agree: {len(got)} cohorts, {sum(len(c.retention) for c in got):,} cells"
    return f"agree: {got.entrants:,} entrants → " + " → ".join(
        f"{s.reached.customers:,}" for s in got.steps[1:]
    )


def _child(database: str) -> int:
    import django

    django.setup()
    from insights.metrics import latest_event_at

    plan = _setup(database)
    as_of = latest_event_at(plan.pk)
    assert as_of is not None
    if run_cases(plan, as_of):
        print("values:      the service and the hand-written SQL agree on every figure")
        return 0
    print("MISMATCH: the service and the hand-written SQL disagree; see the rows above")
    return 1


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        sys.exit(_child(sys.argv[2]))
    sys.exit(main())
