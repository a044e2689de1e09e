"""Re-testing assumptions against the plan's customer data (DOMAIN §5, §7)."""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass
from typing import Any

from django.db import DatabaseError, transaction

from planning.models import Assumption, AssumptionStatus, Plan
from planning.services import record_activity

from .metrics import Measurement, MetricError, latest_event_at, measure, verdict
from .models import AssumptionRun

log = logging.getLogger(__name__)

NO_DATA = "There is no customer data for this plan yet: import events to test this assumption."


@dataclass
class Outcome:
    measurement: Measurement
    status: str
    message: str = ""


def evaluate(assumption: Assumption, plan_id: int, as_of: dt.datetime | None) -> Outcome:
    """Measure one assumption; any problem becomes a status with a message, never an exception."""
    if not assumption.has_test:
        return Outcome(Measurement(None, None), AssumptionStatus.ERROR, "This assumption has no test.")
    if as_of is None:
        return Outcome(Measurement(None, 0), AssumptionStatus.INSUFFICIENT_DATA, NO_DATA)
    try:
        with transaction.atomic():  # a failed statement must not poison the plan's other runs
            measurement = measure(assumption, plan_id, as_of)
    except MetricError as error:
        return Outcome(Measurement(None, None), AssumptionStatus.ERROR, str(error))
    except TypeError:
        return Outcome(
            Measurement(None, None),
            AssumptionStatus.ERROR,
            "The test's settings do not fit its metric; edit the test and choose them again.",
        )
    except DatabaseError:
        log.exception("metric %s failed for assumption %s", assumption.metric, assumption.pk)
        return Outcome(
            Measurement(None, None),
            AssumptionStatus.ERROR,
            "The data could not be read for this test just now; it will be tried again.",
        )
    status = verdict(assumption, measurement)
    message = ""
    if status == AssumptionStatus.INSUFFICIENT_DATA:
        n = measurement.n or 0
        message = (
            f"Only {n:,} in the sample; the test needs at least {assumption.min_sample:,}."
            if n
            else "No customer in the data fits this test yet."
        )
    return Outcome(measurement, status, message)


def retest_assumption(
    assumption: Assumption,
    *,
    as_of: dt.datetime | None = None,
    trigger: str = AssumptionRun.Trigger.MANUAL,
    user: Any = None,
) -> AssumptionRun:
    """Run one assumption's test, store the run and the assumption's new verdict."""
    plan_id = assumption.choice.plan_id
    if as_of is None:
        as_of = latest_event_at(plan_id)
    started = time.perf_counter()
    outcome = evaluate(assumption, plan_id, as_of)
    duration_ms = round((time.perf_counter() - started) * 1000)
    m = outcome.measurement
    with transaction.atomic():
        previous = (
            Assumption.objects.select_for_update().values_list("status", flat=True).get(pk=assumption.pk)
        )
        run = AssumptionRun.objects.create(
            assumption=assumption,
            plan_id=plan_id,
            trigger=trigger,
            requested_by=user if getattr(user, "is_authenticated", False) else None,
            as_of=as_of,
            observed=m.value,
            n=m.n,
            ci_low=m.ci_low,
            ci_high=m.ci_high,
            status=outcome.status,
            previous_status=previous,
            changed=outcome.status != previous,
            message=outcome.message,
            duration_ms=duration_ms,
            test=assumption.test_definition() or {},
        )
        verdict_fields = {
            "status": outcome.status,
            "observed": m.value,
            "sample_size": m.n,
            "ci_low": m.ci_low,
            "ci_high": m.ci_high,
            "last_run_at": run.created_at,
        }
        # A verdict is not an edit: the assumption's version (for edit conflicts) stays.
        Assumption.objects.filter(pk=assumption.pk).update(**verdict_fields)
        for name, value in verdict_fields.items():
            setattr(assumption, name, value)
        if run.changed:
            record_activity(
                assumption.choice.plan,
                None,
                "tested",
                "assumption",
                item_id=assumption.pk,
                item_label=assumption.statement,
                before={"status": previous},
                after={"status": outcome.status, "observed": m.value},
            )
    return run


def tested_assumptions(plan: Plan):
    return (
        Assumption.objects.filter(choice__plan=plan)
        .exclude(metric="")
        .select_related("choice__plan")
        .order_by("choice__position", "choice_id", "position", "id")
    )


def retest_plan(
    plan: Plan,
    *,
    as_of: dt.datetime | None = None,
    trigger: str = AssumptionRun.Trigger.MANUAL,
    user: Any = None,
) -> list[AssumptionRun]:
    """Re-test every tested assumption of a plan, in plan order, as of one moment for all."""
    if as_of is None:
        as_of = latest_event_at(plan.pk)
    return [
        retest_assumption(assumption, as_of=as_of, trigger=trigger, user=user)
        for assumption in tested_assumptions(plan)
    ]


def run_as_json(run: AssumptionRun) -> dict[str, Any]:
    """One element of `manage.py retest SLUG --json` (DOMAIN §7)."""
    assumption = run.assumption
    test = run.test
    return {
        "choice": assumption.choice.title,
        "statement": assumption.statement,
        "metric": test.get("metric"),
        "params": test.get("params"),
        "comparator": test.get("comparator"),
        "threshold": test.get("threshold"),
        "observed": run.observed,
        "n": run.n,
        "ci_low": run.ci_low,
        "ci_high": run.ci_high,
        "status": run.status,
        "changed": run.changed,
        "as_of": run.as_of.astimezone(dt.UTC).isoformat() if run.as_of else None,
        "message": run.message or None,
        "duration_ms": run.duration_ms,
    }

