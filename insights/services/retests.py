"""Re-testing assumptions against the plan's customer data (DOMAIN §5, §7)."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model
from django.db import DatabaseError, OperationalError, connection, connections, transaction
from django.db.models import Q
from django.utils import timezone as dj_timezone

from planning.live import plan_changed
from planning.models import Assumption, AssumptionStatus, Metric, Plan
from planning.services import record_activity

from ..metrics import Measurement, MetricError, latest_event_at, measure, verdict
from ..metrics.spark import SourceUnavailable
from ..models import AssumptionRun, PlanRetest
from . import history
from .history import tested_assumptions
from .sources import plan_engine

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
        return Outcome(
            Measurement(None, None), AssumptionStatus.ERROR, "This assumption has no test."
        )
    if as_of is None:
        return Outcome(Measurement(None, 0), AssumptionStatus.INSUFFICIENT_DATA, NO_DATA)
    # Inside a caller's transaction, a savepoint: a failed statement must not poison the rest.
    # Outside one, autocommit: a read there holds no lock, while on SQLite every transaction
    # of ours begins IMMEDIATE and holds the write lock to its end (a member's save waited
    # 14.5 s behind a test preview).
    savepoint = transaction.atomic() if connection.in_atomic_block else contextlib.nullcontext()
    try:
        with savepoint:
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
        # A mean needs two values for its interval, whatever min_sample says.
        need = max(assumption.min_sample, 2 if assumption.metric == Metric.MEAN_VALUE else 1)
        message = (
            f"Only {n:,} in the sample; the test needs at least {need:,}."
            if n
            else "No customer in the data fits this test yet."
        )
    return Outcome(measurement, status, message)


def latest_data(plan_id: int, *, retry_unreachable: bool = False) -> tuple[dt.datetime | None, str]:
    """The moment of the plan's latest event, and "" ; or None and why the plan's data source
    cannot be read (a cluster that does not answer is raised instead, to retry, when asked)."""
    try:
        return latest_event_at(plan_id), ""
    except MetricError as error:
        if retry_unreachable and isinstance(error, SourceUnavailable):
            raise
        return None, str(error)


def outcome_now(
    assumption: Assumption,
    plan: Plan | int,
    as_of: dt.datetime | None = None,
    failure: str = "",
) -> tuple[dt.datetime | None, Outcome]:
    """The test's outcome where the plan's events live (its data source), as of `as_of` or the
    latest event; `failure`, or a source that cannot be read, is an `error` outcome saying why.
    Also the form's preview of a test not saved yet."""
    plan_id = plan if isinstance(plan, int) else plan.pk
    with plan_engine(plan):
        if as_of is None and not failure:
            as_of, failure = latest_data(plan_id)
        if failure:
            return as_of, Outcome(Measurement(None, None), AssumptionStatus.ERROR, failure)
        return as_of, evaluate(assumption, plan_id, as_of)


def retest_assumption(
    assumption: Assumption,
    *,
    as_of: dt.datetime | None = None,
    trigger: str = AssumptionRun.Trigger.MANUAL,
    user: Any = None,
    retest: PlanRetest | None = None,
    batch: str = "",
    failure: str = "",
) -> AssumptionRun:
    """Run one assumption's test, store the run and the assumption's new verdict. `batch`
    names the plan re-test it is part of: the activity shows that re-test as one line.
    `failure`: why the plan's data could not be read at all (an `error` run saying so).
    The test runs where the plan's events live (its data source)."""
    plan_id = assumption.choice.plan_id
    started = time.perf_counter()
    as_of, outcome = outcome_now(assumption, plan_id, as_of, failure)
    duration_ms = round((time.perf_counter() - started) * 1000)
    m = outcome.measurement
    with transaction.atomic():
        previous = (
            Assumption.objects.select_for_update()
            .values_list("status", flat=True)
            .get(pk=assumption.pk)
        )
        run = AssumptionRun.objects.create(
            assumption=assumption,
            plan_id=plan_id,
            retest=retest,
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
        if not run.changed:
            plan_changed(plan_id, bump=True)  # open boards show the new observed value
        else:
            record_activity(
                assumption.choice.plan,
                None,
                "tested",
                "assumption",
                item_id=assumption.pk,
                item_label=assumption.statement,
                before={"status": previous},
                after={
                    "status": outcome.status,
                    "observed": m.value,
                    **({"_retest": batch, "_trigger": trigger} if batch else {}),
                },
            )
    note_drift(assumption, run)
    return run


def _drift_state(drift: dict | None) -> str:
    return (drift or {}).get("direction", "")


def note_drift(assumption: Assumption, run: AssumptionRun) -> None:
    """At each re-test the history is brought up to date (DOMAIN §10) and its drift kept on the
    run; a change of drift against the previous run is reported like a change of status. A
    history that cannot be computed now never fails the re-test."""
    try:
        found = history.compute_history(assumption, plan=assumption.choice.plan)
    except DatabaseError:
        log.exception("history of assumption %s failed during a re-test", assumption.pk)
        return
    previous = (
        AssumptionRun.objects.filter(assumption=assumption, created_at__lte=run.created_at)
        .exclude(pk=run.pk)
        .order_by("-created_at", "-id")
        .values_list("drift", flat=True)
        .first()
    )
    run.drift = found.drift
    run.drift_changed = _drift_state(found.drift) != _drift_state(previous)
    AssumptionRun.objects.filter(pk=run.pk).update(drift=run.drift, drift_changed=run.drift_changed)


def retest_plan(
    plan: Plan,
    *,
    as_of: dt.datetime | None = None,
    trigger: str = AssumptionRun.Trigger.MANUAL,
    user: Any = None,
    retest: PlanRetest | None = None,
) -> list[AssumptionRun]:
    """Re-test every tested assumption of a plan, in plan order, as of one moment for all.
    One assumption that cannot be evaluated records an error and never stops the others."""
    batch = _batch_of(retest) if retest else f"run-{uuid.uuid4().hex}"
    with plan_engine(plan):  # one session on the plan's cluster for the whole re-test
        failure = ""
        if as_of is None:
            as_of, failure = latest_data(plan.pk)
        return [
            retest_assumption(
                assumption,
                as_of=as_of,
                trigger=trigger,
                user=user,
                retest=retest,
                batch=batch,
                failure=failure,
            )
            for assumption in tested_assumptions(plan)
        ]


def _batch_of(retest: PlanRetest) -> str:
    return f"retest-{retest.pk}"


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


# --- whole-plan re-tests, on demand and on schedule ---------------------------------------------


ACTIVE = (PlanRetest.Status.PENDING, PlanRetest.Status.RUNNING)
# A running re-test's worker writes its heartbeat every HEARTBEAT_SECONDS; one silent for
# STALE_AFTER_SECONDS has died, and the next beat (every minute) hands its re-test on.
HEARTBEAT_SECONDS = 10
STALE_AFTER_SECONDS = 45
# A re-test still waiting this long after it was asked for lost its message on the way.
UNSENT_AFTER_SECONDS = 120


def start_plan_retest(plan: Plan, *, trigger: str = "manual", user: Any = None) -> PlanRetest:
    """Record a plan re-test to run; the caller enqueues `tasks.run_plan_retest` on commit."""
    return PlanRetest.objects.create(
        plan=plan,
        trigger=trigger,
        requested_by=user if getattr(user, "is_authenticated", False) else None,
    )


def request_plan_retest(plan: Plan, *, user: Any = None) -> tuple[PlanRetest, bool]:
    """A person's "Re-test now": a new re-test, and True; or, when one is already waiting or
    running, that one and False (twenty clicks make one re-test, not twenty)."""
    with transaction.atomic():
        Plan.objects.select_for_update().filter(pk=plan.pk).first()  # one request at a time
        active = PlanRetest.objects.filter(plan=plan, status__in=ACTIVE).order_by("-id").first()
        if active is not None:
            return active, False
        return start_plan_retest(plan, user=user), True


def run_plan_retest(retest_id: int, *, retry_unreachable: bool = False) -> PlanRetest | None:
    """Carry out a recorded plan re-test. Safe to run twice: only one run claims it.

    A transient database error hands the claim back (status pending) so the task's retry
    carries on where this run stopped, as of the same moment, without testing an assumption
    twice; any other error marks the re-test failed, so its page stops waiting for it.
    `retry_unreachable`: a Spark cluster that does not answer before the first test is such a
    transient error too (the task's last try records `error` runs that say so instead).
    """
    now = dj_timezone.now()
    claimed = PlanRetest.objects.filter(pk=retest_id, status=PlanRetest.Status.PENDING).update(
        status=PlanRetest.Status.RUNNING, started_at=now, heartbeat_at=now
    )
    if not claimed:
        return None
    retest = PlanRetest.objects.select_related("plan", "requested_by").get(pk=retest_id)
    try:
        with heartbeat(retest_id):
            _run_remaining(retest, retry_unreachable=retry_unreachable)
    except (OperationalError, SourceUnavailable):
        PlanRetest.objects.filter(pk=retest_id).update(status=PlanRetest.Status.PENDING)
        raise
    except Exception:
        PlanRetest.objects.filter(pk=retest_id).update(
            status=PlanRetest.Status.FAILED, finished_at=dj_timezone.now()
        )
        raise
    retest.status = PlanRetest.Status.DONE
    retest.finished_at = dj_timezone.now()
    retest.save(update_fields=["status", "finished_at"])
    return retest


def _run_remaining(retest: PlanRetest, *, retry_unreachable: bool = False) -> None:
    done = retest.runs.values_list("assumption_id", flat=True)
    earlier = retest.runs.exclude(as_of=None).values_list("as_of", flat=True).first()
    with plan_engine(retest.plan):  # one session on the plan's cluster for the whole re-test
        as_of, failure = earlier, ""
        if as_of is None:
            as_of, failure = latest_data(retest.plan_id, retry_unreachable=retry_unreachable)
        for assumption in tested_assumptions(retest.plan).exclude(pk__in=list(done)):
            retest_assumption(
                assumption,
                as_of=as_of,
                trigger=retest.trigger,
                user=retest.requested_by,
                retest=retest,
                batch=_batch_of(retest),
                failure=failure,
            )


@contextlib.contextmanager
def heartbeat(retest_id: int) -> Iterator[None]:
    """While the block runs, a thread writes the re-test's heartbeat every HEARTBEAT_SECONDS,
    also while one long metric runs: a re-test goes stale only when its worker is gone."""
    stop = threading.Event()

    def beat() -> None:
        try:
            while not stop.wait(HEARTBEAT_SECONDS):
                PlanRetest.objects.filter(pk=retest_id, status=PlanRetest.Status.RUNNING).update(
                    heartbeat_at=dj_timezone.now()
                )
        except DatabaseError:
            log.warning("re-test %s: could not write its heartbeat", retest_id, exc_info=True)
        finally:
            connections.close_all()

    thread = threading.Thread(target=beat, name=f"retest-{retest_id}-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def recover_stalled_retests(now: dt.datetime | None = None) -> list[int]:
    """Re-tests to (re)send to a worker: those left "running" by a worker that died (no
    heartbeat for STALE_AFTER_SECONDS) go back to pending, and a new run carries on where the
    dead one stopped; and those whose message never reached a worker. Running one twice is
    safe: only one run claims it."""
    now = now or dj_timezone.now()
    stale = now - dt.timedelta(seconds=STALE_AFTER_SECONDS)
    stalled = list(
        PlanRetest.objects.filter(status=PlanRetest.Status.RUNNING)
        .filter(Q(heartbeat_at__lt=stale) | Q(heartbeat_at=None, started_at__lt=stale))
        .values_list("pk", flat=True)
    )
    PlanRetest.objects.filter(pk__in=stalled, status=PlanRetest.Status.RUNNING).update(
        status=PlanRetest.Status.PENDING
    )
    unsent = PlanRetest.objects.filter(
        status=PlanRetest.Status.PENDING,
        started_at=None,
        created_at__lt=now - dt.timedelta(seconds=UNSENT_AFTER_SECONDS),
    ).exclude(pk__in=stalled)
    return stalled + list(unsent.values_list("pk", flat=True))


def dispatch_due_retests(now: dt.datetime | None = None) -> list[PlanRetest]:
    """Start the scheduled re-tests that are due. Two beats at once never start one twice:
    each due plan is claimed with SKIP LOCKED and its slot is unique per plan."""
    now = now or dj_timezone.now()
    started = []
    with transaction.atomic():
        due = (
            Plan.objects.select_for_update(skip_locked=True)
            .exclude(retest_cadence="off")
            .filter(next_retest_at__lte=now)
        )
        for plan in due:
            slot = plan.next_retest_at
            retest, created = PlanRetest.objects.get_or_create(
                plan=plan, scheduled_for=slot, defaults={"trigger": AssumptionRun.Trigger.SCHEDULED}
            )
            Plan.objects.filter(pk=plan.pk).update(next_retest_at=plan.next_retest_after(now))
            if created:
                started.append(retest)
    return started


def request_assumption_retest(assumption: Assumption) -> tuple[dt.datetime, bool]:
    """A person's "Re-test now" of one assumption: (when it was asked, True) for a new request
    the caller enqueues; (when the waiting one was asked, False) while one already waits, so
    twenty clicks make one re-test. A request older than UNSENT_AFTER_SECONDS was lost on its
    way and may be asked again."""
    now = dj_timezone.now()
    lost = now - dt.timedelta(seconds=UNSENT_AFTER_SECONDS)
    claimed = (
        Assumption.objects.filter(pk=assumption.pk)
        .filter(Q(retest_requested_at=None) | Q(retest_requested_at__lt=lost))
        .update(retest_requested_at=now)
    )
    if claimed:
        return now, True
    waiting = (
        Assumption.objects.filter(pk=assumption.pk)
        .values_list("retest_requested_at", flat=True)
        .first()
    )
    return waiting or now, False


def retest_assumption_by_id(
    assumption_id: int, *, user_id: int | None = None
) -> AssumptionRun | None:
    assumption = Assumption.objects.select_related("choice__plan").filter(pk=assumption_id).first()
    if assumption is None:
        return None
    # Whatever happens next, the waiting request is answered: a new click may ask again.
    Assumption.objects.filter(pk=assumption_id).update(retest_requested_at=None)
    if not assumption.has_test:
        return None
    user = get_user_model().objects.filter(pk=user_id).first() if user_id else None
    return retest_assumption(assumption, user=user)
