"""Customer lifetime value (DOMAIN §9) on 100,000 customers.

Customers are drawn from the models themselves (BG/NBD and Gamma-Gamma with CDNOW-like
parameters) over 78 weeks, first purchases spread over the first year, stored as purchase events
(one per purchase day) in a scratch database; the report is then taken as of 26 weeks before the
data ends (so with its holdout test), and each stage timed: the per-customer summaries in SQL,
the two fits, the predictions, the holdout, and the whole `customer_lifetime_value`. The fitted
parameters are printed beside the ones the customers were drawn from. Targets are printed,
never asserted.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres python -m bench clv

Without a PostgreSQL URL, SQLite alone. BENCH_CLV_CUSTOMERS changes the number of customers.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

from bench.metrics import BASE_DIR, machine, postgres_url, scratch_database

DB_NAME = "outside_in_bench_clv"
TRUE = {"r": 0.25, "alpha": 4.4, "a": 0.8, "b": 2.4, "p": 6.0, "q": 3.7, "gamma": 15.0}
START = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
WEEKS = 78
HOLDOUT_WEEKS = 26
TARGET_S = 10.0  # the whole report on 100,000 customers


def main() -> int:
    print(f"machine:     {machine()}")
    status = run_child(None, "SQLite")
    url = postgres_url("clv on PostgreSQL")
    if url is not None:
        with scratch_database(url, DB_NAME) as bench_url:
            status |= run_child(bench_url, "PostgreSQL")
    return status


def run_child(database_url: str | None, label: str) -> int:
    """`python -m bench.clv --child` in a temporary var directory, on that database (None:
    SQLite there)."""
    print(f"\n--- {label}", flush=True)
    with tempfile.TemporaryDirectory(prefix="outside-in-bench-clv-") as tmp:
        env = {**os.environ, "OUTSIDE_IN_VAR_DIR": tmp, "DJANGO_SETTINGS_MODULE": "config.settings"}
        env.pop("REDIS_URL", None)
        env.pop("DATABASE_URL", None)
        if database_url:
            env["DATABASE_URL"] = database_url
        child = [sys.executable, "-m", "bench.clv", "--child"]
        return subprocess.run(child, env=env, cwd=BASE_DIR, check=False).returncode


def purchases(customers: int, seed: int = 1) -> Iterator[tuple[str, dt.datetime, Decimal]]:
    """(customer, moment, value) of each purchase of customers drawn from the models (two on
    one day, rare here, become one purchase day: the figures drift a little from the drawn
    ones for that)."""
    rnd = random.Random(seed)
    end = START + dt.timedelta(weeks=WEEKS)
    for n in range(customers):
        rate = rnd.gammavariate(TRUE["r"], 1 / TRUE["alpha"])
        drop = rnd.betavariate(TRUE["a"], TRUE["b"])
        scale = rnd.gammavariate(TRUE["q"], 1 / TRUE["gamma"])
        at = START + dt.timedelta(weeks=rnd.uniform(0, 52))
        first = True
        while at <= end:
            value = max(round(rnd.gammavariate(TRUE["p"], 1 / scale), 2), 0.01)
            yield f"b{n:06d}", at, Decimal(str(value))
            # A customer may drop out after each repeat purchase (not after the first).
            if not first and rnd.random() < drop:
                break
            first = False
            at += dt.timedelta(weeks=min(rnd.expovariate(rate), 10 * WEEKS))


def load(plan_id: int, customers: int) -> int:
    from django.db import connection, transaction

    columns = "plan_id, customer_id, occurred_at, event_type, value, segment, channel, attributes, dedupe_key"
    segments = ["retail", "smb", "enterprise"]
    rows = (
        (plan_id, c, at, "purchase", v, segments[int(c[1:]) % 3], "web", "{}", uuid.uuid4())
        for c, at, v in purchases(customers)
    )
    count = 0
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            with cursor.copy(f"COPY insights_event ({columns}) FROM STDIN") as out:
                for row in rows:
                    out.write_row(row)
                    count += 1
            cursor.execute("ANALYZE insights_event")
        else:
            sql = f"INSERT INTO insights_event ({columns}) VALUES ({', '.join(['%s'] * 9)})"
            batch: list[tuple] = []
            for plan, c, at, kind, v, segment, channel, attributes, key in rows:
                batch.append(
                    (
                        plan,
                        c,
                        connection.ops.adapt_datetimefield_value(at),
                        kind,
                        str(v),
                        segment,
                        channel,
                        attributes,
                        key.hex,
                    )
                )
                if len(batch) == 10_000:
                    cursor.executemany(sql, batch)
                    count += len(batch)
                    batch = []
            cursor.executemany(sql, batch)
            count += len(batch)
    return count


def timed(label: str, run: Callable[[], Any], target: str = "") -> Any:
    """Wall time, and this process's CPU time (SQLite works in it; PostgreSQL does not): on
    a busy machine the CPU time says what the work costs."""
    cpu, started = time.process_time(), time.perf_counter()
    result = run()
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    print(f"{label:<40} {wall:>6.2f}s wall {cpu:>6.2f}s CPU {target}", flush=True)
    return result


def _child() -> int:
    import django

    django.setup()
    from django.core.management import call_command

    from insights import clv
    from insights.clv import summaries as sums
    from insights.metrics import Scope, latest_event_at
    from planning.services import create_plan

    customers = int(os.environ.get("BENCH_CLV_CUSTOMERS", "100000"))
    call_command("migrate", verbosity=0)
    plan = create_plan("CLV bench", "clv-bench")
    started = time.perf_counter()
    count = load(plan.pk, customers)
    print(
        f"events:      {count:,} purchases of {customers:,} customers, stored in {time.perf_counter() - started:.1f}s"
    )
    latest = latest_event_at(plan.pk)
    assert latest is not None
    as_of = latest - dt.timedelta(weeks=HOLDOUT_WEEKS)
    scope = Scope(plan.pk, as_of)

    summaries = timed(
        "summaries (SQL, one pass)", lambda: sums.customer_summaries(scope, "purchase")
    )
    frequency = timed("BG/NBD fit", lambda: clv.bgnbd.fit(summaries.x, summaries.t_x, summaries.T))
    spenders = (summaries.valued > 0) & (summaries.m > 0)
    spend = timed(
        "Gamma-Gamma fit",
        lambda: clv.gamma_gamma.fit(summaries.valued[spenders], summaries.m[spenders]),
    )
    timed(
        "E[Y(52)] and P(alive), every customer",
        lambda: (
            frequency.expected_purchases(52, summaries.x, summaries.t_x, summaries.T),
            frequency.p_alive(summaries.x, summaries.t_x, summaries.T),
        ),
    )
    weeks = [k / 1.0 for k in range(1, HOLDOUT_WEEKS + 1)]
    timed(
        f"holdout predictions ({HOLDOUT_WEEKS} weeks)",
        lambda: frequency.total_expected_purchases(weeks, summaries.x, summaries.t_x, summaries.T),
    )
    report = timed(
        "customer_lifetime_value, all of it",
        lambda: clv.customer_lifetime_value(plan.pk, as_of=as_of),
        f"(target < {TARGET_S:.0f} s)",
    )
    print(f"customers:   {report['customers']:,}, {report['repeat_customers']:,} with repeat days")
    fitted = {**frequency.as_json(), **spend.as_json()}
    print("parameters:  " + ", ".join(f"{k} {fitted[k]:.3f} (drawn {v})" for k, v in TRUE.items()))
    holdout = report["holdout"]
    print(
        f"holdout:     predicted {holdout['predicted']:,.0f}, actual {holdout['actual']:,} purchase days"
    )
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        sys.exit(_child())
    sys.exit(main())
