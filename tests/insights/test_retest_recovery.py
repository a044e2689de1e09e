"""A plan re-test whose worker is killed mid-way: it stops beating, the next beat hands it on,
and a new run finishes it with every assumption tested exactly once. A real Celery worker in a
process of its own, PostgreSQL and Redis (skipped without them, unless REQUIRE_SERVICES=1)."""

from __future__ import annotations

import os
import signal

import pytest

from insights import tasks
from insights.models import AssumptionRun, PlanRetest
from insights.services import retests
from insights.services.retests import recover_stalled_retests, run_plan_retest, start_plan_retest
from planning.models import Assumption

from .retest_data import seed_plan
from .test_import_worker import _start_worker_process, _stop, on_redis, wait_for

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]
__all__ = ["on_redis"]  # the fixture, used by name

MANY = 400  # tested assumptions: enough for the re-test to take a few seconds


def test_a_worker_killed_mid_retest_is_carried_on_and_each_assumption_tested_once(
    plan, on_redis, tmp_path, monkeypatch
):
    seeded = seed_plan(plan)
    choice = seeded.tested[0].choice
    Assumption.objects.bulk_create(
        Assumption(
            choice=choice,
            statement=f"At least {n} customers buy",
            metric="active_customers",
            params={"event_type": "purchase"},
            comparator=">=",
            threshold=n,
            position=10 + n,
        )
        for n in range(MANY)
    )
    tested = retests.tested_assumptions(plan).count()
    retest = start_plan_retest(plan)
    process, log = _start_worker_process(tmp_path)
    try:
        tasks.run_plan_retest.delay(retest.pk)
        try:
            wait_for(
                lambda: AssumptionRun.objects.filter(retest=retest).count() >= 5,
                what="the worker to start the re-test",
            )
        except AssertionError:
            raise AssertionError(log.read_text()[-3000:]) from None
        os.kill(process.pid, signal.SIGKILL)
        process.wait(30)
    finally:
        _stop(process)
    retest.refresh_from_db()
    done_before = AssumptionRun.objects.filter(retest=retest).count()
    assert retest.status == "running" and retest.heartbeat_at is not None
    assert 5 <= done_before < tested

    # A live worker beats every HEARTBEAT_SECONDS; this one is silent. Past STALE_AFTER_SECONDS
    # (made short here) the beat's recovery hands the re-test on.
    monkeypatch.setattr(retests, "STALE_AFTER_SECONDS", 1)
    wait_for(lambda: retest.pk in recover_stalled_retests(), what="the re-test to be handed on")
    assert PlanRetest.objects.get(pk=retest.pk).status == "pending"

    assert run_plan_retest(retest.pk) is not None
    retest.refresh_from_db()
    assert retest.status == "done"
    runs = AssumptionRun.objects.filter(retest=retest)
    assert runs.count() == tested
    assert runs.values("assumption").distinct().count() == tested  # none tested twice
    assert len({run.as_of for run in runs}) == 1  # all as of the same moment
