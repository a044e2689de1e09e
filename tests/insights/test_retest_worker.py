"""Re-tests and digests through a real Celery worker, real Redis, real PostgreSQL and a real SMTP
server: what the embedded, eager or mocked variants cannot show (messages on commit, retries)."""

from __future__ import annotations

import datetime as dt

import kombu.pools
import pytest
import redis
from celery.contrib.testing.worker import start_worker
from celery.signals import task_postrun
from django.db import connection, connections

from config.celery import app
from insights import tasks
from insights.models import AssumptionRun, DigestDelivery, PlanRetest
from insights.services.retests import start_plan_retest
from planning.models import Membership, Plan
from tests.conftest import REQUIRE_SERVICES, need_service

from .retest_data import LateSmtpServer, seed_plan, set_previous_statuses, wait_for

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]

BROKER = "redis://127.0.0.1:6379/6"
SITE = "https://outside-in.example.com"


FINISHED: list[str] = []  # the names of the tasks the worker has finished, in order


def _after_task(sender=None, **_: object) -> None:
    FINISHED.append(sender.name)
    # The worker thread's connection would outlive the test and keep the test database open.
    connections.close_all()


def finished(name: str) -> int:
    return FINISHED.count(f"insights.tasks.{name}")


def _reset_broker_connections() -> None:
    # Celery keeps the broker's connection and producer pools once made: drop them, so the next
    # message goes to the broker now configured.
    kombu.pools.reset()
    app._pool = None
    app.amqp._producer_pool = None


@pytest.fixture
def worker(transactional_db):
    need_service("Redis", "127.0.0.1", 6379)
    if connection.vendor != "postgresql":
        message = "a real worker needs PostgreSQL (it shares the test's rows from another thread)"
        if REQUIRE_SERVICES:
            pytest.fail(message + " and REQUIRE_SERVICES=1")
        pytest.skip(message)
    redis.Redis.from_url(BROKER).flushdb()  # nothing left over from an earlier run
    previous = app.conf.broker_url, app.conf.broker_transport_options
    app.conf.broker_url = BROKER
    app.conf.broker_transport_options = {"visibility_timeout": 3600}
    _reset_broker_connections()
    FINISHED.clear()
    task_postrun.connect(_after_task)
    try:
        with start_worker(
            app, pool="solo", perform_ping_check=False, shutdown_timeout=20
        ) as running:
            yield running
    finally:
        task_postrun.disconnect(_after_task)
        app.conf.broker_url, app.conf.broker_transport_options = previous
        _reset_broker_connections()


@pytest.fixture
def seeded(plan):
    return seed_plan(plan)


def test_the_worker_runs_a_plan_retest(plan, seeded, cmo, worker):
    retest = start_plan_retest(plan, user=cmo.user)
    tasks.run_plan_retest.delay(retest.pk)
    wait_for(lambda: PlanRetest.objects.get(pk=retest.pk).status == "done", what="the re-test")
    runs = AssumptionRun.objects.filter(retest=retest)
    assert sorted(runs.values_list("assumption_id", flat=True)) == sorted(
        a.pk for a in seeded.tested
    )
    assert dict(runs.values_list("assumption__statement", "status")) == {
        seeded.repeat.statement: "broken",
        seeded.revenue.statement: "holds",
        seeded.buyers.statement: "holds",
    }
    assert DigestDelivery.objects.count() == 0  # asked for by hand: no e-mail


def due_now(plan: Plan) -> None:
    plan.retest_cadence = "daily"
    plan.save()
    Plan.objects.filter(pk=plan.pk).update(
        next_retest_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)
    )


def test_a_due_plan_is_re_tested_and_the_digest_e_mailed(
    plan, seeded, cmo, observer, worker, smtp_server, settings
):
    settings.SITE_URL = SITE
    Membership.objects.filter(pk=observer.membership.pk).update(digest_opt_out=True)
    set_previous_statuses(seeded)
    due_now(plan)

    tasks.dispatch_due_retests.delay()  # what beat sends every minute
    wait_for(lambda: smtp_server.messages, what="the digest e-mail")
    retest = PlanRetest.objects.get()
    assert (retest.trigger, retest.status) == ("scheduled", "done")
    assert retest.runs.count() == 3
    assert Plan.objects.get().next_retest_at > dt.datetime.now(dt.UTC)

    (message,) = smtp_server.messages
    assert message["Subject"] == "FY2027 growth plan: 2 assumptions changed"
    assert message["To"] == "ana@example.com"
    assert message["List-Unsubscribe"].startswith(f"<{SITE}/unsubscribe/")
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert "* At least half of first-time buyers buy again within 30 days" in text
    assert "Holds -> Broken" in text and "Untested -> Holds" in text
    assert "Observed 25.0% (95% interval 14.2% – 40.2%), n = 40; target ≥ 50.0%" in text
    assert f"{SITE}/plans/fy2027/assumptions/{seeded.repeat.pk}/history/" in text
    assert "<strong>Holds → Broken</strong>" in html
    delivery = DigestDelivery.objects.get()
    assert delivery.sent_at is not None and delivery.attempts == 1

    # The next beat finds nothing due: no second re-test, no second e-mail.
    tasks.dispatch_due_retests.delay()
    tasks.run_plan_retest.delay(retest.pk)  # and a re-delivered re-test changes nothing
    wait_for(
        lambda: finished("dispatch_due_retests") == 2 and finished("run_plan_retest") == 2,
        what="the second beat and the redelivery",
    )
    assert finished("send_digest") == 1
    assert PlanRetest.objects.count() == 1 and AssumptionRun.objects.count() == 3
    assert len(smtp_server.messages) == 1


def test_a_digest_arrives_after_the_mail_server_comes_back(
    plan, seeded, cmo, worker, settings, monkeypatch
):
    # Retry after 1 s, then 2 s …, not 30 s: the backoff is read when the task retries.
    monkeypatch.setattr(tasks.send_digest, "retry_backoff", 1)
    monkeypatch.setattr(tasks.send_digest, "retry_jitter", False)
    smtp = LateSmtpServer(settings)  # nothing listens yet
    try:
        set_previous_statuses(seeded)
        due_now(plan)
        tasks.dispatch_due_retests.delay()
        failed = wait_for(
            lambda: DigestDelivery.objects.filter(attempts__gte=1).first(),
            what="a first failed attempt",
        )
        assert failed.sent_at is None
        assert failed.last_error.startswith("ConnectionRefusedError:")

        smtp.start()
        wait_for(lambda: smtp.messages, what="the digest after the retry")
        delivery = wait_for(
            lambda: DigestDelivery.objects.filter(sent_at__isnull=False).first(), what="sent_at"
        )
        assert delivery.last_error == ""
        assert delivery.attempts == 2
        (message,) = smtp.messages
        assert message["Subject"] == "FY2027 growth plan: 2 assumptions changed"
        assert message["To"] == "ana@example.com"
    finally:
        smtp.stop()
