"""Re-testing a plan (DOMAIN §5, §7): runs stored, verdicts kept, changes found, the JSON shape."""

from __future__ import annotations

import datetime as dt
import io
import json
import math
import re
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command

from insights.models import AssumptionRun, Event
from insights.services.retests import NO_DATA, retest_plan, run_plan_retest, start_plan_retest
from lifecycle.models import EventMapping, Stage
from planning.models import Activity, Assumption, AssumptionStatus, StrategicChoice
from tests.planning.test_activity import feed

pytestmark = pytest.mark.django_db

UTC = dt.UTC
LATEST = dt.datetime.fromisoformat("2026-06-30T18:22:05.5+02:00")
KEYS = [
    "choice",
    "statement",
    "metric",
    "params",
    "comparator",
    "threshold",
    "observed",
    "n",
    "ci_low",
    "ci_high",
    "status",
    "changed",
    "as_of",
    "message",
    "duration_ms",
]


def wilson(k: int, n: int) -> tuple[float, float, float]:
    """A share and its 95% Wilson score interval, written out from the textbook formula."""
    z = 1.96
    p = k / n
    centre = (k + z * z / 2) / (n + z * z)
    spread = z * math.sqrt(n) / (n + z * z) * math.sqrt(p * (1 - p) + z * z / (4 * n))
    return p, centre - spread, centre + spread


_key = iter(range(10**9))


def add(plan, *rows) -> None:
    """(customer, moment, type[, value])"""
    Event.objects.bulk_create(
        Event(
            plan=plan,
            customer_id=customer,
            occurred_at=dt.datetime.fromisoformat(at) if isinstance(at, str) else at,
            event_type=kind,
            value=None if not rest else Decimal(str(rest[0])),
            dedupe_key=Event.identity(f"test-{next(_key)}", {}, 0),
        )
        for customer, at, kind, *rest in rows
    )


def buyers(plan, prefix: str, count: int, repeaters: int, first: dt.datetime) -> None:
    """`count` first-time buyers on `first`'s day; the first `repeaters` buy again 3 days later."""
    rows = []
    for i in range(count):
        at = first + dt.timedelta(minutes=i)
        rows.append((f"{prefix}{i}", at, "purchase", "20.5"))
        if i < repeaters:
            rows.append((f"{prefix}{i}", at + dt.timedelta(days=3), "purchase", "10.25"))
    add(plan, *rows)


def assume(choice, statement, metric, params, comparator, threshold, position=0, **fields):
    if comparator == "between":
        threshold, fields["threshold_high"] = threshold
    return Assumption.objects.create(
        choice=choice,
        statement=statement,
        position=position,
        metric=metric,
        params=params,
        comparator=comparator,
        threshold=threshold,
        **fields,
    )


@pytest.fixture
def workshop(plan):
    """Two choices, created out of plan order, with four tested assumptions and one by hand."""
    loyalty = StrategicChoice.objects.create(
        plan=plan, title="Launch a loyalty subscription", position=1
    )
    app = StrategicChoice.objects.create(plan=plan, title="Relaunch the app", position=0)
    tests = {
        "repeat": assume(
            loyalty,
            "At least 30% of first-time buyers buy again within 30 days",
            "repeat_rate",
            {"event_type": "purchase", "within_days": 30},
            ">=",
            0.3,
            position=1,
        ),
        "nps": assume(loyalty, "Customers recommend us", "nps", {"event_type": "survey"}, ">=", 0),
        "active": assume(
            app, "At least 40 active customers", "active_customers", {}, ">=", 40, position=0
        ),
        "total": assume(
            app,
            "Sales between 100 and 10,000",
            "total_value",
            {"event_type": "purchase"},
            "between",
            (100, 10_000),
            position=1,
        ),
    }
    Assumption.objects.create(choice=app, statement="The app team can ship by June", position=2)
    buyers(plan, "c", 40, 16, dt.datetime(2026, 3, 2, 10, tzinfo=UTC))
    add(
        plan,
        ("c0", "2026-06-01T10:00Z", "survey", 10),
        ("c1", "2026-06-01T10:00Z", "survey", 3),
        ("late", LATEST, "visit"),
    )
    return tests


def test_retest_plan_stores_one_run_per_tested_assumption_in_plan_order(plan, workshop):
    runs = retest_plan(plan)
    assert [run.assumption.statement for run in runs] == [
        "At least 40 active customers",
        "Sales between 100 and 10,000",
        "Customers recommend us",
        "At least 30% of first-time buyers buy again within 30 days",
    ]
    assert AssumptionRun.objects.count() == 4
    by_test = {name: AssumptionRun.objects.get(assumption=a) for name, a in workshop.items()}
    for run in by_test.values():
        assert run.plan_id == plan.pk and run.as_of == LATEST
        assert run.previous_status == AssumptionStatus.UNTESTED and run.changed
        assert run.duration_ms >= 0 and run.trigger == AssumptionRun.Trigger.MANUAL
        assert run.test == run.assumption.test_definition()

    p, low, high = wilson(16, 40)  # [26.4%, 55.3%] straddles 30%
    repeat = by_test["repeat"]
    assert (repeat.observed, repeat.n, repeat.status) == (p, 40, AssumptionStatus.AT_RISK)
    assert (repeat.ci_low, repeat.ci_high) == (pytest.approx(low), pytest.approx(high))
    assert repeat.message == ""

    active = by_test["active"]  # 40 buyers and the last visitor
    assert (active.observed, active.n, active.ci_low, active.ci_high) == (41.0, None, None, None)
    assert active.status == AssumptionStatus.HOLDS

    total = by_test["total"]
    assert (total.observed, total.n, total.ci_low) == (40 * 20.5 + 16 * 10.25, None, None)
    assert total.status == AssumptionStatus.HOLDS

    nps = by_test["nps"]  # two customers scored, fewer than min_sample 30
    assert (nps.observed, nps.n, nps.status) == (0.0, 2, AssumptionStatus.INSUFFICIENT_DATA)
    assert "30" in nps.message

    for name, assumption in workshop.items():
        assumption.refresh_from_db()
        run = by_test[name]
        assert assumption.status == run.status
        assert (assumption.observed, assumption.sample_size) == (run.observed, run.n)
        assert (assumption.ci_low, assumption.ci_high) == (run.ci_low, run.ci_high)
        assert assumption.last_run_at == run.created_at
        assert assumption.version == 1  # a verdict is not an edit
    by_hand = Assumption.objects.get(statement="The app team can ship by June")
    assert by_hand.status == AssumptionStatus.UNTESTED and not by_hand.runs.exists()


def test_a_second_run_on_the_same_data_changes_nothing_until_the_data_does(plan, workshop):
    first = retest_plan(plan)
    activities = Activity.objects.filter(plan=plan, action="tested").count()
    assert activities == 4

    second = retest_plan(plan)
    assert [run.changed for run in second] == [False] * 4
    assert [run.status for run in second] == [run.status for run in first]
    assert [run.previous_status for run in second] == [run.status for run in first]
    assert Activity.objects.filter(plan=plan, action="tested").count() == activities
    assert AssumptionRun.objects.count() == 8

    # Thirty new buyers in April who all come back: the repeat rate now clearly holds.
    buyers(plan, "april", 30, 30, dt.datetime(2026, 4, 6, 9, tzinfo=UTC))
    third = {run.assumption_id: run for run in retest_plan(plan)}
    repeat = third[workshop["repeat"].pk]
    p, low, _ = wilson(46, 70)
    assert (repeat.observed, repeat.n) == (p, 70)
    assert repeat.ci_low == pytest.approx(low) and low > 0.3
    assert (repeat.previous_status, repeat.status) == ("at_risk", "holds") and repeat.changed
    assert [run.changed for run in third.values()].count(True) == 1
    workshop["repeat"].refresh_from_db()
    assert (workshop["repeat"].status, workshop["repeat"].sample_size) == ("holds", 70)
    assert Activity.objects.filter(plan=plan, action="tested").count() == activities + 1


def test_a_plan_retest_is_one_line_of_activity_however_many_assumptions_it_changed(
    plan, workshop, cmo
):
    retest_plan(plan, trigger=AssumptionRun.Trigger.COMMAND)
    assert Activity.objects.filter(plan=plan, action="tested").count() == 4  # one per item
    (line,) = feed(cmo.client, plan)
    assert line.startswith(
        "Outside-In re-tested the plan from the command line: 4 assumptions changed status."
    )
    # Each assumption in plan order, its statuses in words and its value as its metric shows it.
    assert "“At least 40 active customers”: was Untested → now Holds observed 41" in line
    assert "“Sales between 100 and 10,000”: was Untested → now Holds observed 984.00" in line
    assert (
        "“At least 30% of first-time buyers buy again within 30 days”: "
        "was Untested → now At risk observed 40.0%"
    ) in line
    assert "Revert" not in line
    statements = ["At least 40 active", "Sales between", "Customers recommend", "At least 30%"]
    assert sorted(statements, key=line.index) == statements  # in plan order

    # A scheduled re-test that changes one assumption is a line of its own, above.
    buyers(plan, "april", 30, 30, dt.datetime(2026, 4, 6, 9, tzinfo=UTC))
    retest = start_plan_retest(plan, trigger=AssumptionRun.Trigger.SCHEDULED)
    run_plan_retest(retest.pk)
    newest, oldest = feed(cmo.client, plan)
    assert newest.startswith("Outside-In re-tested the plan on its schedule: 1 assumption")
    assert "was At risk → now Holds observed 65.7%" in newest  # 46 of 70
    assert oldest == line


def test_a_test_that_cannot_be_evaluated_is_an_error_and_the_others_still_run(plan, workshop):
    loyalty = StrategicChoice.objects.get(title="Launch a loyalty subscription")
    missing = assume(
        loyalty, "Buyers come back", "repeat_rate", {"event_type": "purchase"}, ">=", 0.3, 5
    )
    stray = assume(loyalty, "Few leave", "churn_rate", {"within_days": 30}, "<=", 0.3, 6)
    stage = assume(loyalty, "Most reach Retain", "stage_reach", {"stage": "Retain"}, ">=", 0.5, 7)
    runs = {run.assumption_id: run for run in retest_plan(plan)}
    assert len(runs) == 7
    for test, named in [(missing, "within_days"), (stray, "within_days"), (stage, "Retain")]:
        run = runs[test.pk]
        assert run.status == AssumptionStatus.ERROR and run.changed
        assert named in run.message
        assert (run.observed, run.n, run.ci_low, run.ci_high) == (None, None, None, None)
        test.refresh_from_db()
        assert test.status == AssumptionStatus.ERROR
    assert runs[workshop["repeat"].pk].status == AssumptionStatus.AT_RISK
    assert runs[workshop["active"].pk].status == AssumptionStatus.HOLDS


def test_stage_reach_runs_once_the_stage_exists_and_is_mapped(plan, workshop):
    loyalty = StrategicChoice.objects.get(title="Launch a loyalty subscription")
    reach = assume(loyalty, "Most surveyed", "stage_reach", {"stage": "engage"}, ">=", 0.01, 5)
    EventMapping.objects.create(
        plan=plan, event_type="survey", stage=Stage.objects.get(plan=plan, name="Engage")
    )
    run = next(run for run in retest_plan(plan) if run.assumption_id == reach.pk)
    p, _, _ = wilson(2, 41)
    assert (run.observed, run.n, run.status) == (p, 41, AssumptionStatus.HOLDS)


def test_a_plan_without_events_is_insufficient_data_with_a_message(plan, workshop):
    Event.objects.filter(plan=plan).delete()
    runs = retest_plan(plan)
    assert len(runs) == 4
    for run in runs:
        assert run.status == AssumptionStatus.INSUFFICIENT_DATA and run.changed
        assert run.message == NO_DATA
        assert run.as_of is None and run.observed is None


def run_command(*args) -> tuple[list[dict], str]:
    out = io.StringIO()
    call_command("retest", *args, stdout=out)
    text = out.getvalue()
    return json.loads(text), text


def test_retest_json_prints_the_domain_shape(plan, workshop):
    data, text = run_command("fy2027", "--json")
    assert isinstance(data, list) and len(data) == 4
    for item in data:
        assert list(item) == KEYS
        assert isinstance(item["duration_ms"], int) and item["duration_ms"] >= 0
        assert item["as_of"] == "2026-06-30T16:22:05.500000+00:00"
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?\+00:00", item["as_of"])
    active, total, nps, repeat = data
    assert {k: v for k, v in active.items() if k != "duration_ms"} == {
        "choice": "Relaunch the app",
        "statement": "At least 40 active customers",
        "metric": "active_customers",
        "params": {},
        "comparator": ">=",
        "threshold": 40.0,
        "observed": 41.0,
        "n": None,
        "ci_low": None,
        "ci_high": None,
        "status": "holds",
        "changed": True,
        "as_of": "2026-06-30T16:22:05.500000+00:00",
        "message": None,
    }
    assert total["threshold"] == [100, 10_000]
    assert (total["observed"], total["n"], total["ci_low"], total["ci_high"]) == (
        984.0,
        None,
        None,
        None,
    )
    assert (nps["n"], nps["status"]) == (2, "insufficient_data") and nps["message"]
    assert nps["params"] == {"event_type": "survey"}

    _, low, high = wilson(16, 40)
    assert repeat["choice"] == "Launch a loyalty subscription"
    assert repeat["params"] == {"event_type": "purchase", "within_days": 30}
    assert (repeat["comparator"], repeat["threshold"]) == (">=", 0.3)
    assert (repeat["observed"], repeat["n"], repeat["status"]) == (0.4, 40, "at_risk")
    assert repeat["ci_low"] == pytest.approx(low, rel=1e-12)
    assert repeat["ci_high"] == pytest.approx(high, rel=1e-12)
    # Full precision: the stored numbers, not rounded for reading.
    stored = AssumptionRun.objects.get(assumption=workshop["repeat"])
    assert (repeat["ci_low"], repeat["ci_high"]) == (stored.ci_low, stored.ci_high)
    assert repr(stored.ci_low) in text and len(repr(stored.ci_low)) > 10

    again, _ = run_command("fy2027", "--json")
    assert [item["changed"] for item in again] == [False] * 4
    assert AssumptionRun.objects.filter(trigger=AssumptionRun.Trigger.COMMAND).count() == 8


def test_retest_as_of_a_date_is_midnight_utc(plan, workshop):
    data, _ = run_command("fy2027", "--json", "--as-of", "2026-03-20")
    assert {item["as_of"] for item in data} == {"2026-03-20T00:00:00+00:00"}
    active, total, _nps, repeat = data
    assert active["observed"] == 40.0  # the last visitor came in June
    assert total["observed"] == 984.0
    assert (repeat["n"], repeat["observed"], repeat["status"]) == (0, None, "insufficient_data")


def test_retest_as_of_a_moment_with_an_offset(plan):
    choice = StrategicChoice.objects.create(plan=plan, title="Grow")
    assume(choice, "Two customers", "active_customers", {}, ">=", 2)
    add(
        plan,
        ("a", dt.datetime(2026, 3, 1, 13, 5, tzinfo=UTC), "visit"),
        ("b", dt.datetime(2026, 3, 1, 13, 5, 0, 1, tzinfo=UTC), "visit"),
    )
    data, _ = run_command("fy2027", "--json", "--as-of", "2026-03-01T14:05:00+01:00")
    assert data[0]["as_of"] == "2026-03-01T13:05:00+00:00"
    assert (data[0]["observed"], data[0]["status"]) == (1.0, "broken")
    data, _ = run_command("fy2027", "--json")
    assert data[0]["as_of"] == "2026-03-01T13:05:00.000001+00:00"
    assert (data[0]["observed"], data[0]["status"], data[0]["changed"]) == (2.0, "holds", True)


def test_retest_refuses_an_unknown_plan_and_a_bad_date(plan):
    with pytest.raises(CommandError, match="nowhere"):
        call_command("retest", "nowhere", "--json")
    with pytest.raises(CommandError, match="ISO 8601"):
        call_command("retest", "fy2027", "--as-of", "last tuesday")


def test_retest_without_json_says_what_changed(plan, workshop):
    out = io.StringIO()
    call_command("retest", "fy2027", stdout=out)
    lines = out.getvalue().splitlines()
    assert lines[-1] == "4 assumptions re-tested."
    assert lines[0].split()[:2] == ["holds", "changed"]
