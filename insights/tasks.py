"""Celery tasks: thin wrappers that take ids and call a service. Each is safe to run twice."""

from __future__ import annotations

import smtplib

from celery import Task, shared_task
from celery.utils.time import get_exponential_backoff_interval
from django.db import OperationalError, transaction

from planning.jobs import enqueue
from planning.models import Assumption, Plan

from .metrics.spark import SourceUnavailable
from .services import digests, history, imports, retests

# Transient trouble (a database restart, a busy SQLite file) is retried with backoff.
TRANSIENT = (OperationalError,)


@shared_task(
    acks_late=True, autoretry_for=TRANSIENT, retry_backoff=5, retry_backoff_max=300, max_retries=5
)
def import_events(import_id: int) -> None:
    """Import a kept file. Redelivered after a crash, it reclaims the import only once the dead
    run's heartbeat has gone stale; its transaction left nothing behind."""
    imports.run_import(import_id)


@shared_task
def mark_stalled_imports() -> int:
    return imports.mark_stalled_imports()


@shared_task(
    bind=True,
    acks_late=True,
    autoretry_for=(*TRANSIENT, SourceUnavailable),
    retry_backoff=5,
    retry_backoff_max=300,
    max_retries=5,
)
def run_plan_retest(self: Task, retest_id: int) -> None:
    # A Spark cluster that does not answer is tried again with backoff; the last try records
    # `error` runs that say so, so that the re-test ends and its page stops waiting.
    last_try = self.request.retries >= (self.max_retries or 0)
    retests.run_plan_retest(retest_id, retry_unreachable=not last_try)
    # Also when this delivery found the re-test already done (a redelivery after a crash between
    # the two steps): queue_digests claims each re-test once and only after a scheduled one.
    with transaction.atomic():
        for delivery in digests.queue_digests(retest_id):
            enqueue(send_digest, delivery.pk)


@shared_task(
    acks_late=True, autoretry_for=TRANSIENT, retry_backoff=5, retry_backoff_max=300, max_retries=5
)
def retest_assumption(assumption_id: int, user_id: int | None = None) -> None:
    retests.retest_assumption_by_id(assumption_id, user_id=user_id)


@shared_task(
    acks_late=True, autoretry_for=TRANSIENT, retry_backoff=5, retry_backoff_max=300, max_retries=5
)
def compute_history(assumption_id: int) -> None:
    """An assumption's history for its current test and data (nothing if it exists already)."""
    assumption = (
        Assumption.objects.select_related("choice__plan")
        .filter(pk=assumption_id)
        .exclude(metric="")
        .first()
    )
    if assumption is not None:
        history.compute_history(assumption, plan=assumption.choice.plan)


@shared_task(
    acks_late=True, autoretry_for=TRANSIENT, retry_backoff=5, retry_backoff_max=300, max_retries=5
)
def compute_plan_history(plan_id: int) -> None:
    plan = Plan.objects.filter(pk=plan_id).first()
    if plan is not None:
        history.compute_plan_history(plan)


@shared_task
def dispatch_due_retests() -> int:
    """Every minute (beat): start the plans' scheduled re-tests that are due, and carry on
    those a dead worker left behind."""
    with transaction.atomic():
        started = [retest.pk for retest in retests.dispatch_due_retests()]
        started += retests.recover_stalled_retests()
        for retest_id in started:
            enqueue(run_plan_retest, retest_id)
    return len(started)


MAIL_TROUBLE = (smtplib.SMTPException, OSError, *TRANSIENT)


@shared_task(
    bind=True,
    acks_late=True,
    max_retries=12,
    retry_backoff=30,
    retry_backoff_max=3600,
    retry_jitter=True,
)
def send_digest(self: Task, delivery_id: int) -> bool:
    """A failing mail server delays the e-mail (retried with backoff); the run is never lost.
    The backoff is read when retrying (not fixed at import, as `autoretry_for` does)."""
    try:
        return digests.send_digest(delivery_id)
    except MAIL_TROUBLE as error:
        countdown = get_exponential_backoff_interval(
            factor=self.retry_backoff,
            retries=self.request.retries,
            maximum=self.retry_backoff_max,
            full_jitter=self.retry_jitter,
        )
        raise self.retry(exc=error, countdown=countdown) from error


@shared_task(
    acks_late=True, autoretry_for=TRANSIENT, retry_backoff=5, retry_backoff_max=300, max_retries=5
)
def compute_customer_value(plan_id: int, data_version: int, request: dict) -> None:
    """The lifetime-value report of one plan, data version and choice of filters (§9)."""
    from .services import clv_jobs

    clv_jobs.compute_customer_value(plan_id, data_version, request)
