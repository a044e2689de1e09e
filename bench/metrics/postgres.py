"""The PostgreSQL half: the demo plan with 19 more tests, ~1,000,000 events through `COPY`.

Its plan and loader also serve the history and customers benchmarks."""

from __future__ import annotations

import copy
import datetime as dt
import itertools
import os
import time
from typing import Any

from bench.metrics.compare import compare_plan, report_values, time_retests

TARGET_RATIO = 1.5


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


def run() -> int:
    """The child on the scratch PostgreSQL database: its exit status."""
    import django

    django.setup()
    plan = setup(int(os.environ.get("BENCH_METRICS_EVENTS", "1000000")))
    rows = compare_plan(plan, TARGET_RATIO, by_cpu=False)
    time_retests(plan)
    return report_values(rows)
