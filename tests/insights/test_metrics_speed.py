"""What keeps the metrics fast enough for a live room (issue #10), in terms that do not depend
on the machine: how many statements a metric takes, how the database is asked to run them,
and that measuring never holds a lock a member's save would wait for. The timings themselves
are the benchmarks' (`make bench BENCH_ARGS="metrics history"`).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import re
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from insights.metrics import measure_series
from insights.services import retests
from insights.services.history import history_ends
from lifecycle.models import EventMapping, Stage
from planning.models import Assumption, StrategicChoice
from tests.insights.test_metrics import Row, store

UTC = dt.UTC
BASE_DIR = Path(__file__).resolve().parents[2]
TYPES = ["visit", "purchase", "survey", "support_ticket", "login"]
START = dt.datetime(2025, 1, 1, tzinfo=UTC)
AS_OF = dt.datetime(2026, 2, 10, 12, tzinfo=UTC)

# One test of every metric, with and without a window, filtered or not.
TESTS: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("active_customers", {}, {}),
    ("active_customers", {}, {"window_days": 30}),
    ("active_customers", {"event_type": "purchase"}, {"window_days": 7, "channel": "web"}),
    ("repeat_rate", {"event_type": "purchase", "within_days": 30}, {}),
    ("repeat_rate", {"event_type": "purchase", "within_days": 30}, {"window_days": 90}),
    (
        "conversion_rate",
        {"from_event": "visit", "to_event": "purchase", "within_days": 14},
        {"window_days": 60},
    ),
    ("churn_rate", {"inactive_days": 60}, {"segment": "value"}),
    ("stage_reach", {"stage": "Buy"}, {}),
    ("stage_reach", {"stage": "Buy"}, {"window_days": 30}),
    ("mean_value", {"event_type": "purchase"}, {"window_days": 90}),
    ("total_value", {"event_type": "purchase"}, {}),
    ("nps", {"event_type": "survey"}, {"window_days": 90}),
]
IDS = [f"{metric}-{'-'.join(map(str, fields.values())) or 'all'}" for metric, _, fields in TESTS]


def events(customers: int = 60, seed: int = 7) -> list[Row]:
    """A seeded year and more of events of every type, two segments and two channels."""
    rng = random.Random(seed)
    rows = []
    span = (AS_OF - START).total_seconds()
    for number in range(customers):
        segment = rng.choice(["value", "loyal"])
        for _ in range(rng.randint(2, 12)):
            kind = rng.choice(TYPES)
            value = rng.randint(0, 10) if kind == "survey" else rng.randint(5, 300)
            at = START + dt.timedelta(seconds=rng.uniform(0, span))
            rows.append(
                Row(
                    f"c{number:03d}",
                    at.replace(microsecond=0),
                    kind,
                    Decimal(value) if kind in {"survey", "purchase"} else None,
                    segment,
                    rng.choice(["web", "store"]),
                )
            )
    rows.append(Row("c000", AS_OF, "visit", None, "value", "web"))
    return rows


@pytest.fixture
def assumptions(plan) -> list[Assumption]:
    buy = Stage.objects.get(plan=plan, name="Buy")
    EventMapping.objects.create(plan=plan, stage=buy, event_type="purchase")
    store(plan, events())
    choice = StrategicChoice.objects.create(plan=plan, title="Grow repeat business")
    return [
        Assumption.objects.create(
            choice=choice,
            statement=f"{metric} {number}",
            metric=metric,
            params=params,
            comparator=">=",
            threshold=0.1,
            **fields,
        )
        for number, (metric, params, fields) in enumerate(TESTS)
    ]


def month_ends() -> list[dt.datetime]:
    return history_ends(START, AS_OF, "month")


def event_statements(queries: CaptureQueriesContext) -> list[str]:
    return [query["sql"] for query in queries.captured_queries if "insights_event" in query["sql"]]


# --- one statement, whatever the number of moments ----------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("number", range(len(TESTS)), ids=IDS)
def test_a_metric_is_one_statement_at_one_moment_or_at_every_month_end(plan, assumptions, number):
    assumption = assumptions[number]
    assert len(month_ends()) == 14

    with CaptureQueriesContext(connection) as one:
        measure_series(assumption, plan.pk, [AS_OF])
    with CaptureQueriesContext(connection) as many:
        series = measure_series(assumption, plan.pk, month_ends())

    assert len(series) == 14
    assert len(event_statements(one)) == 1
    assert len(event_statements(many)) == 1
    assert len(many) == len(one)


# --- how the database runs it -------------------------------------------------------------------


def plan_lines(sql: str) -> list[str]:
    """The statement's plan, one node a line, indented by depth (two spaces a level);
    PostgreSQL's nodes say which side of their parent they are ("Inner: Seq Scan …")."""
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("EXPLAIN QUERY PLAN " + sql)
            # Rows (id, parent, _, detail): depth from the parent links.
            depth: dict[int, int] = {0: -1}
            lines = []
            for node, parent, _, detail in cursor.fetchall():
                depth[node] = depth.get(parent, -1) + 1
                lines.append("  " * depth[node] + detail)
            return lines
        cursor.execute("EXPLAIN (FORMAT JSON) " + sql)
        (document,) = cursor.fetchone()
        document = json.loads(document) if isinstance(document, str) else document
        lines = []

        def walk(node: dict, level: int) -> None:
            side = node.get("Parent Relationship", "")
            lines.append(
                "  " * level
                + (f"{side}: " if side else "")
                + " ".join(filter(None, [node["Node Type"], node.get("Relation Name")]))
            )
            for child in node.get("Plans", []):
                walk(child, level + 1)

        walk(document[0]["Plan"], 0)
        return lines


def _level(line: str) -> int:
    return len(line) - len(line.lstrip())


def loops_over_events(lines: list[str]) -> list[str]:
    """Reads of the events that run once per row of something else, or meet every row of a
    list of moments. PostgreSQL: a read of the events on the inner side of a nested loop
    (hash joins read each side once), or joined with a list of values. SQLite: a read of the
    events, or a scan without an index of anything, that follows another table's read at the
    same depth (the inner loop), or a read of the events in a correlated subquery."""
    found = []
    if connection.vendor == "postgresql":
        for index, line in enumerate(lines):
            if not line.strip().endswith(("Nested Loop", "Hash Join", "Merge Join")):
                continue
            inner, below_it = False, []
            for below in lines[index + 1 :]:
                if _level(below) <= _level(line):
                    break
                below_it.append(below)
                if _level(below) == _level(line) + 1:
                    inner = below.strip().startswith("Inner:")
                if inner and below.endswith(" insights_event") and "Nested" in line:
                    found.append(f"{line.strip()}, for each row: {below.strip()}")
            if any(b.endswith(" insights_event") for b in below_it) and any(
                "Values Scan" in b for b in below_it
            ):
                found.append(f"{line.strip()}: the events beside a list of values")
        return found
    for index, line in enumerate(lines):
        events = bool(re.match(r"\s*(SCAN|SEARCH) e\b", line))
        unindexed = bool(re.match(r"\s*SCAN \w+$", line))
        if not events and not unindexed:
            continue
        for before in reversed(lines[:index]):
            if _level(before) < _level(line):
                if events and "CORRELATED" in before:
                    found.append(f"{before.strip()}: {line.strip()}")
                break
            if _level(before) == _level(line) and before.strip().startswith(("SCAN", "SEARCH")):
                found.append(f"{before.strip()}, for each row: {line.strip()}")
                break
    return found


def event_reads(lines: list[str]) -> list[str]:
    """The plan's reads of the events table (alias `e`)."""
    if connection.vendor == "postgresql":
        return [line for line in lines if line.endswith(" insights_event")]
    return [line for line in lines if re.match(r"\s*(SCAN|SEARCH) e\b", line)]


@pytest.mark.django_db
@pytest.mark.parametrize("number", range(len(TESTS)), ids=IDS)
def test_a_series_reads_the_events_in_one_pass_never_once_per_moment(plan, assumptions, number):
    """Each event meets its moments through comparisons in its own row, never through a join
    with a table of moments: such a join compares every event with every moment, and SQLite ran
    it moments-first, reading the events once per moment (3.5 s for a history of the demo)."""
    with CaptureQueriesContext(connection) as queries:
        measure_series(assumptions[number], plan.pk, month_ends())
    (statement,) = event_statements(queries)

    lines = plan_lines(statement)

    assert loops_over_events(lines) == [], "\n".join(lines)
    # One read; a conversion reads its two event types apart.
    reads = 2 if TESTS[number][0] == "conversion_rate" else 1
    assert len(event_reads(lines)) == reads, "\n".join(lines)


UNTYPED = [
    number
    for number, (_, params, _) in enumerate(TESTS)
    if not params.get("event_type") and "from_event" not in params
]


@pytest.mark.django_db
@pytest.mark.parametrize("number", UNTYPED, ids=[IDS[number] for number in UNTYPED])
def test_over_every_type_sqlite_reads_the_table_through_not_the_type_index(
    plan, assumptions, number
):
    """With statistics that say one plan holds the events, SQLite's planner reads a time range
    through the (plan, type, time) index, one type after another (a skip scan), and fetches
    every row in that order: ten times the cost of reading the table through."""
    if connection.vendor != "sqlite":
        pytest.skip("a rule of SQLite's planner; PostgreSQL's plans come from its statistics")
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    with CaptureQueriesContext(connection) as queries:
        measure_series(assumptions[number], plan.pk, month_ends())
    (statement,) = event_statements(queries)

    lines = plan_lines(statement)

    assert not [line for line in lines if "ANY(" in line], "\n".join(lines)


# --- the test preview never holds up a save -------------------------------------------------------


def preview_form(**test: str) -> dict[str, str]:
    """The assumption form as a person fills it in, with a churn test by default."""
    return {
        "statement": "Few customers go quiet",
        "importance": "4",
        "evidence": "2",
        "min_sample": "5",
        "metric": "churn_rate",
        "param_inactive_days": "60",
        "comparator": "<=",
        "threshold": "50",
    } | test


@pytest.mark.django_db(transaction=True)
def test_the_preview_measures_outside_any_transaction(plan, cmo, monkeypatch):
    """On SQLite every transaction of ours begins IMMEDIATE: it holds the database's write lock
    until it ends, and a member's save waits for it (14.5 s behind a slow preview). A preview
    writes nothing: its metric runs in autocommit, where a read holds no lock a writer needs."""
    StrategicChoice.objects.create(plan=plan, title="Keep customers")
    store(plan, events())
    seen: list[bool] = []
    real = retests.measure

    def measure(*args, **kwargs):
        seen.append(connection.in_atomic_block)
        return real(*args, **kwargs)

    monkeypatch.setattr(retests, "measure", measure)

    response = cmo.client.post(reverse("insights:test_preview", args=[plan.slug]), preview_form())

    assert response.status_code == 200
    assert "churn" in response.content.decode().lower()
    assert seen == [False]


# Run in a process of its own (below): a plan on a SQLite file, a preview whose metric is still
# running while another member saves. Prints one JSON object.
PREVIEW_BESIDE_A_SAVE = """
import json, threading
import django
django.setup()
from django.core.management import call_command
from django.db import connections, transaction
from django.test import Client
from django.urls import reverse
from insights.services import retests
from planning.models import Assumption, Membership, Role, StrategicChoice
from planning.services import create_plan
from django.contrib.auth import get_user_model
from tests.insights.test_metrics import store
from tests.insights.test_metrics_speed import events, preview_form

call_command("migrate", verbosity=0)
plan = create_plan("FY2027 growth plan", "fy2027")
user = get_user_model().objects.create_user("ana", password="x")
Membership.objects.create(plan=plan, user=user, role=Role.CMO)
choice = StrategicChoice.objects.create(plan=plan, title="Keep customers")
store(plan, events())
other = Assumption.objects.create(choice=choice, statement="Saved by another member")

measuring, measured = threading.Event(), threading.Event()
real = retests.measure

def slow_measure(*args, **kwargs):
    measuring.set()
    # The metric "runs" until the save is done, or for 10 s at most.
    saved.wait(timeout=10)
    measured.set()
    return real(*args, **kwargs)

retests.measure = slow_measure
saved = threading.Event()
result = {}

def preview():
    client = Client(HTTP_HOST="localhost")
    client.force_login(user)
    response = client.post(reverse("insights:test_preview", args=[plan.slug]), preview_form())
    result["preview"] = response.status_code
    connections.close_all()

thread = threading.Thread(target=preview)
thread.start()
assert measuring.wait(timeout=60)
try:
    with transaction.atomic():
        Assumption.objects.filter(pk=other.pk).update(statement="Saved during a preview")
    result["saved_while_the_preview_measured"] = not measured.is_set()
except Exception as error:
    result["save_failed"] = repr(error)
saved.set()
thread.join()
print(json.dumps(result))
"""


@pytest.mark.slow
def test_a_slow_preview_does_not_hold_up_a_save_on_a_sqlite_file(tmp_path):
    """The real thing, whichever database the suite runs on: SQLite's locks on a file (the test
    database is in memory) and two connections, as the web server's threads have them."""
    env = {
        **os.environ,
        "OUTSIDE_IN_VAR_DIR": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "LOG_LEVEL": "WARNING",
    }
    for name in ("DATABASE_URL", "REDIS_URL"):
        env.pop(name, None)

    child = subprocess.run(
        [sys.executable, "-c", PREVIEW_BESIDE_A_SAVE],
        env=env,
        cwd=BASE_DIR,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert child.returncode == 0, child.stderr[-3000:]
    result = json.loads(child.stdout.strip().splitlines()[-1])
    assert result == {"preview": 200, "saved_while_the_preview_measured": True}
