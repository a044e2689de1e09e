"""With the broker down, a change is saved, the person is told its background work waits, and
that work is sent once the broker is back: a Redis server of the test's own, stopped and
started by the test (the machine's shared Redis is never touched)."""

from __future__ import annotations

import shutil
import subprocess
import time

import kombu.pools
import pytest
import redis
from django.urls import reverse

from config.celery import app
from insights.models import PlanRetest
from planning import jobs
from planning.models import Comment, PendingJob, StrategicChoice
from tests.conftest import REQUIRE_SERVICES, free_port

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]


class PrivateRedis:
    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url)
        for _ in range(100):
            try:
                if client.ping():
                    return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise AssertionError("the test's Redis did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None

    def queued(self) -> int:
        return redis.Redis.from_url(self.url).llen("celery")


def _use_broker(url: str) -> None:
    kombu.pools.reset()
    app._pool = None
    app.amqp._producer_pool = None
    app.conf.broker_url = url


@pytest.fixture
def broker():
    if shutil.which("redis-server") is None:
        message = "redis-server is not installed"
        if REQUIRE_SERVICES:
            pytest.fail(message + " and REQUIRE_SERVICES=1")
        pytest.skip(message)
    server = PrivateRedis()
    server.start()
    previous = app.conf.broker_url
    _use_broker(server.url)
    yield server
    server.stop()
    _use_broker(previous)


@pytest.fixture
def choice(plan):
    return StrategicChoice.objects.create(plan=plan, title="Launch a loyalty subscription")


def test_with_the_broker_down_a_mention_is_saved_told_and_sent_once_it_is_back(
    plan, cmo, cio, choice, broker
):
    broker.stop()
    url = reverse("planning:choice_comments", args=[plan.slug, choice.pk])
    response = cmo.client.post(url, {"body": "@maya what do you think?"}, follow=True)
    assert response.status_code == 200
    assert Comment.objects.filter(body="@maya what do you think?").exists()
    kept = PendingJob.objects.get()
    assert kept.task == "planning.tasks.send_mention"
    assert jobs.WAITING in response.content.decode()

    assert jobs.send_pending_jobs() == 0  # still down: kept, one more attempt counted
    assert PendingJob.objects.get().attempts == 1

    broker.start()
    assert jobs.send_pending_jobs() == 1
    assert not PendingJob.objects.exists()
    assert broker.queued() == 1


def test_with_the_broker_down_retest_now_waits_and_its_page_says_why(plan, cmo, broker):
    broker.stop()
    response = cmo.client.post(reverse("insights:plan_retest", args=[plan.slug]), follow=True)
    assert response.status_code == 200
    assert jobs.WAITING in response.content.decode()
    retest = PlanRetest.objects.get()
    assert retest.status == "pending"
    assert PendingJob.objects.get().args == [retest.pk]
    broker.start()
    assert jobs.send_pending_jobs() == 1
    assert broker.queued() == 1


def test_a_healthy_broker_keeps_nothing_and_says_nothing(plan, cmo, choice, broker):
    url = reverse("planning:choice_comments", args=[plan.slug, choice.pk])
    response = cmo.client.post(url, {"body": "@maya a look?"}, follow=True)
    assert jobs.WAITING not in response.content.decode()
    assert not PendingJob.objects.exists()


def test_with_redis_down_the_import_page_shows_what_the_database_knows(plan, cmo, settings):
    from insights.models import Import

    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{free_port()}/0",  # nothing listens there
        }
    }
    record = Import.objects.create(
        plan=plan, uploaded_by=cmo.user, original_name="events.csv", status="running", rows_read=7
    )
    response = cmo.client.get(reverse("insights:import_detail", args=[plan.slug, record.pk]))
    assert response.status_code == 200
    assert "events.csv" in response.content.decode()
