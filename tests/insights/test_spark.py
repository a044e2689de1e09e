"""The metric engine on Apache Spark (Spark Connect): the same numbers as the database's.

A Spark Connect server is started once for the module, on loopback, requiring a token. The same
events are stored in the plan (PostgreSQL or SQLite, whichever the run uses) and written as
Parquet; every metric, as one moment and as a history series, must come out of both alike to
1e-9, and the CDNOW lifetime-value fits (DOMAIN §9) must be the published ones from Spark. Each
failure path is an `error` run with a message, never an exception.

Skipped without pyspark (the `[spark]` extra) or Java; with REQUIRE_SERVICES=1 those fail.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import time
from decimal import Decimal

import pytest

from insights.clv.report import customer_lifetime_value
from insights.metrics import Measurement, first_event_at, latest_event_at, measure, measure_series
from insights.models import Event, PlanDataSource
from insights.services.retests import evaluate
from insights.services.sources import plan_engine, save_data_source
from lifecycle.models import EventMapping
from planning.models import Assumption, AssumptionStatus, Plan
from tests.insights.events import store
from tests.insights.spark_server import _free_port, write_parquet
from tests.insights.test_clv import cdnow_rows
from tests.insights.test_metrics import Row, generate

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

UTC = dt.UTC
CDNOW_AS_OF = dt.datetime(1997, 9, 30, 23, 59, 59, tzinfo=UTC)


def same(a: Measurement, b: Measurement) -> bool:
    def close(x, y) -> bool:
        if x is None or y is None:
            return x is y
        return math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-9)

    return a.n == b.n and all(
        close(getattr(a, name), getattr(b, name)) for name in ("value", "ci_low", "ci_high")
    )


TESTS = [
    ("active_customers", {}),
    ("active_customers", {"event_type": "purchase"}),
    ("repeat_rate", {"event_type": "purchase", "within_days": 7}),
    ("repeat_rate", {"event_type": "purchase", "within_days": 90}),
    ("conversion_rate", {"from_event": "signup", "to_event": "purchase", "within_days": 7}),
    ("churn_rate", {"inactive_days": 60}),
    ("stage_reach", {"stage": "Buy"}),
    ("mean_value", {"event_type": "purchase"}),
    ("total_value", {"event_type": "purchase"}),
    ("nps", {"event_type": "survey"}),
]
VIEWS = [("", "", None), ("smb", "", 30), ("", "web", 120)]


def test_every_metric_equals_the_database_engine(plan, spark_server, tmp_path):
    rows = store(plan, generate())
    stages = {stage.name: stage for stage in plan.stages.all()}
    for kind, name in {"visit": "Explore", "signup": "Buy", "purchase": "Buy"}.items():
        EventMapping.objects.create(plan=plan, event_type=kind, stage=stages[name])
    # Mapped names: the source calls its moment `ts` and its type `kind` (in upper case).
    table = write_parquet(tmp_path / "year", rows, {"occurred_at": "ts", "event_type": "kind"})
    source = spark_server.source(table, columns={"occurred_at": "ts", "event_type": "kind"})
    from insights.metrics.spark import check, on_source

    as_of = latest_event_at(plan.pk)
    assert as_of is not None
    ends = [
        dt.datetime(2026, month, 1, tzinfo=UTC) - dt.timedelta(microseconds=1)
        for month in (1, 3, 5)
    ]
    ends.append(as_of)
    tests = [
        Assumption(metric=metric, params=params, segment=segment, channel=channel, window_days=days)
        for metric, params in TESTS
        for segment, channel, days in VIEWS
    ]
    expected = {
        "latest": as_of,
        "first": first_event_at(plan.pk),
        "first smb": first_event_at(plan.pk, segment="smb", channel="web"),
        "series": [measure_series(test, plan.pk, ends) for test in tests],
        "single": [measure(test, plan.pk, as_of) for test in tests[::3]],
    }
    assert check(source) == (len(rows), as_of)
    with on_source(source, plan.pk):
        measured = {
            "latest": latest_event_at(plan.pk),
            "first": first_event_at(plan.pk),
            "first smb": first_event_at(plan.pk, segment="smb", channel="web"),
            "series": [measure_series(test, plan.pk, ends) for test in tests],
            "single": [measure(test, plan.pk, as_of) for test in tests[::3]],
        }
    for key in ("latest", "first", "first smb"):
        assert measured[key] == expected[key], key
    for test, spark, database in zip(tests, measured["series"], expected["series"], strict=True):
        label = f"{test.metric} {test.params} {test.segment} {test.channel} {test.window_days}"
        assert len(spark) == len(ends)
        for at, a, b in zip(ends, spark, database, strict=True):
            assert same(a, b), f"{label} as of {at}: spark {a} != database {b}"
    for spark, database in zip(measured["single"], expected["single"], strict=True):
        assert same(spark, database), f"spark {spark} != database {database}"
    # The data is not trivial: the comparisons above compared numbers, not emptiness.
    assert all(series[-1].value for series in expected["series"][:3])


def test_cdnow_acceptance_numbers_from_spark(plan, spark_server, tmp_path, monkeypatch):
    """From a plan whose data source is a Spark table of the CDNOW events (DOMAIN §7)."""
    rows = store(plan, cdnow_rows())
    table = write_parquet(tmp_path / "cdnow", rows)
    imported = customer_lifetime_value(plan.pk, as_of=CDNOW_AS_OF)
    repeat = Assumption(metric="repeat_rate", params={"event_type": "purchase", "within_days": 90})
    mean = Assumption(metric="mean_value", params={"event_type": "purchase"})
    expected = [measure(test, plan.pk, CDNOW_AS_OF) for test in (repeat, mean)]
    # The events now live only on the cluster: an answer can only come from there.
    Event.objects.filter(plan=plan).delete()
    monkeypatch.setenv("CDNOW_SPARK_TOKEN", spark_server.token)
    url = f"sc://localhost:{spark_server.port}"
    save_data_source(
        PlanDataSource(
            plan=plan, engine="spark", url=url, table=table, token_env="CDNOW_SPARK_TOKEN"
        )
    )
    plan = Plan.objects.get(pk=plan.pk)
    assert plan.data_source.last_check_message.startswith(f"Connected: {len(rows):,} events")
    with plan_engine(plan):
        report = customer_lifetime_value(plan.pk, as_of=CDNOW_AS_OF)
        measured = [measure(test, plan.pk, CDNOW_AS_OF) for test in (repeat, mean)]

    assert report["customers"] == 2357
    assert report["repeat_customers"] == 946
    fit, spend = report["bgnbd"], report["gamma_gamma"]
    # Published (DOMAIN §9): r 0.2426, alpha 4.414, a 0.793, b 2.426, LL −9582.43;
    # p 6.25, q 3.74, γ 15.44, LL −4055.92.
    assert (round(fit["r"], 4), round(fit["alpha"], 3)) == (0.2426, 4.414)
    assert (round(fit["a"], 3), round(fit["b"], 3)) == (0.793, 2.426)
    assert round(fit["log_likelihood"], 2) == -9582.43
    assert (round(spend["p"], 2), round(spend["q"], 2), round(spend["gamma"], 2)) == (
        6.25,
        3.74,
        15.44,
    )
    assert round(spend["log_likelihood"], 2) == -4055.92
    for key in ("bgnbd", "gamma_gamma"):
        for name, value in imported[key].items():
            assert math.isclose(report[key][name], value, rel_tol=1e-9), (key, name)
    assert report["holdout"] == imported["holdout"]
    for spark, database in zip(measured, expected, strict=True):
        assert same(spark, database), f"spark {spark} != database {database}"


# --- failure paths: an `error` run with a message, never an exception ----------------------------


@pytest.fixture
def small(tmp_path) -> str:
    at = dt.datetime(2026, 3, 1, 10, tzinfo=UTC)
    rows = [Row(customer, at, "purchase", Decimal(5)) for customer in ("a", "b")]
    return write_parquet(tmp_path / "small", rows)


def run_on(source, plan) -> tuple[str, str]:
    from insights.metrics.spark import on_source

    test = Assumption(
        metric="active_customers", params={}, comparator=">=", threshold=1, min_sample=1
    )
    with on_source(source, plan.pk):
        outcome = evaluate(test, plan.pk, dt.datetime(2026, 3, 2, tzinfo=UTC))
    return outcome.status, outcome.message


def test_a_source_answers_as_events(plan, spark_server, small):
    assert run_on(spark_server.source(small), plan) == (AssumptionStatus.HOLDS, "")


def test_cluster_down(plan, spark_server, small):
    from insights.metrics.spark import DataSource, SourceError, check

    source = DataSource(f"sc://127.0.0.1:{_free_port()}", small)
    started = time.monotonic()
    status, message = run_on(source, plan)
    assert status == AssumptionStatus.ERROR
    assert message.startswith(f"The Spark cluster at {source.url} does not answer")
    with pytest.raises(SourceError, match="does not answer"):
        check(source)
    assert time.monotonic() - started < 30


def test_wrong_table(plan, spark_server, tmp_path):
    from insights.metrics.spark import SourceError, check

    for table in ("sales.missing_events", f"parquet.`{tmp_path / 'nothing-here'}`"):
        source = spark_server.source(table)
        status, message = run_on(source, plan)
        assert status == AssumptionStatus.ERROR
        assert message == (
            f"The Spark cluster has no table {table}: check the table's name in the data source."
        )
        with pytest.raises(SourceError):
            check(source)
    status, message = run_on(spark_server.source("events; DROP TABLE x"), plan)
    assert (status, message) == (
        AssumptionStatus.ERROR,
        "“events; DROP TABLE x” is not a table name Outside-In can read.",
    )


def test_missing_columns_are_named(plan, spark_server, small):
    source = spark_server.source(small, columns={"customer_id": "client", "occurred_at": "ts"})
    status, message = run_on(source, plan)
    assert status == AssumptionStatus.ERROR
    assert message.startswith(f"The table {small} has no column “client”, “ts”:")


def test_token_refused(plan, spark_server, small):
    for token in ("not-the-token", ""):
        source = dataclasses.replace(spark_server.source(small), token=token)
        status, message = run_on(source, plan)
        assert status == AssumptionStatus.ERROR
        assert message == (
            f"The Spark cluster at {source.url} refused the access token: ask its administrator "
            "for a valid token and enter it in the data source."
        )
