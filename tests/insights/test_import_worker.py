"""The import with the real services: a Celery worker on Redis, PostgreSQL, two imports at once,
and a worker killed in the middle of an import. Skipped on SQLite and without Redis, unless
REQUIRE_SERVICES=1 (then they fail)."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import kombu.pools
import pytest
import redis
from celery.contrib.testing.worker import start_worker
from celery.signals import task_postrun
from django.conf import settings as django_settings
from django.core.cache import cache
from django.db import connection, connections

from config.celery import app
from insights import tasks
from insights.models import Event, Import
from insights.services.imports import (
    create_import,
    mark_stalled_imports,
    progress,
    progress_key,
    read_progress,
    run_import,
)
from tests.conftest import REQUIRE_SERVICES, need_service

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]

REDIS = "redis://127.0.0.1:6379/5"
HEADER = "customer_id,occurred_at,event_type,value,segment,channel,event_id\n"


def rows(start: int, stop: int, *, event_ids: bool = False) -> str:
    return "".join(
        f"c{i % 5000},2026-{1 + i % 12:02d}-{1 + i % 28:02d}T{i % 24:02d}:00:00Z,"
        f"{'purchase' if i % 3 else 'visit'},{i % 1000}.25,retail,web,{f'e{i}' if event_ids else ''}\n"
        for i in range(start, stop)
    )


def new_import(plan, content: str, name: str = "events.csv") -> Import:
    return create_import(plan, io.BytesIO(content.encode()), name)


def wait_for(condition: Callable[[], object], what: str, seconds: float = 60) -> object:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if found := condition():
            return found
        time.sleep(0.05)
    raise AssertionError(f"waited {seconds:.0f}s for {what}")


def _reset_broker_connections() -> None:
    # Celery keeps its broker connection and producer pools once made: drop them, so the next
    # message goes to the broker configured now.
    kombu.pools.reset()
    app._pool = None
    app.amqp._producer_pool = None


@pytest.fixture
def on_redis(transactional_db, settings):
    """PostgreSQL and Redis, with the cache and the broker on a Redis database of our own."""
    need_service("Redis", "127.0.0.1", 6379)
    if connection.vendor != "postgresql":
        message = "the import's real-service tests need PostgreSQL (DATABASE_URL)"
        if REQUIRE_SERVICES:
            pytest.fail(message + " and REQUIRE_SERVICES=1")
        pytest.skip(message)
    client = redis.Redis.from_url(REDIS)
    client.flushdb()  # no message or progress left over from an earlier run
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS}
    }
    previous = app.conf.broker_url, app.conf.broker_transport_options
    app.conf.broker_url = REDIS
    app.conf.broker_transport_options = {"visibility_timeout": 3600}
    _reset_broker_connections()
    try:
        yield client
    finally:
        app.conf.broker_url, app.conf.broker_transport_options = previous
        _reset_broker_connections()
        client.flushdb()
        client.close()


def _close_connections(**_: object) -> None:
    # The worker thread's connection would outlive the test and keep the test database open.
    connections.close_all()


@pytest.fixture
def worker(on_redis):
    task_postrun.connect(_close_connections)
    try:
        with start_worker(
            app, pool="solo", perform_ping_check=False, shutdown_timeout=30
        ) as running:
            yield running
    finally:
        task_postrun.disconnect(_close_connections)


def test_a_celery_worker_imports_a_file(plan, worker):
    record = new_import(plan, HEADER + rows(0, 500))
    tasks.import_events.delay(record.pk)
    done = wait_for(
        lambda: Import.objects.filter(
            pk=record.pk, status__in=["succeeded", "rejected", "failed"]
        ).first(),
        what="the import",
    )
    assert (done.status, done.rows_read, done.rows_imported, done.message) == (
        "succeeded",
        500,
        500,
        "",
    )
    assert Event.objects.filter(source_import=record).count() == 500
    assert read_progress(done)["fraction"] == 1.0
    assert cache.get(progress_key(record.pk)) is None


def test_concurrent_imports_of_overlapping_files_store_the_union_once(plan, on_redis):
    files = [
        HEADER + rows(0, 20_000) + rows(0, 5_000, event_ids=True),
        HEADER + rows(10_000, 30_000) + rows(2_000, 7_000, event_ids=True),
    ]
    records = [new_import(plan, content, f"part-{n}.csv") for n, content in enumerate(files)]
    start = threading.Barrier(len(records))
    outcome: dict[int, object] = {}

    def work(pk: int) -> None:
        try:
            start.wait()
            outcome[pk] = run_import(pk)
        except Exception as error:  # reported below, with the thread's own exception
            outcome[pk] = error
        finally:
            connections.close_all()

    threads = [threading.Thread(target=work, args=(record.pk,)) for record in records]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    done = [outcome[record.pk] for record in records]
    assert all(isinstance(d, Import) and d.status == "succeeded" for d in done), done
    assert Event.objects.count() == 30_000 + 7_000
    assert sum(d.rows_imported for d in done) == 37_000
    assert sum(d.rows_duplicate for d in done) == 10_000 + 3_000
    assert (
        Event.objects.filter(event_id__isnull=False).values("event_id").distinct().count() == 7_000
    )


def _database_url() -> str:
    db = connection.settings_dict
    auth = quote(db["USER"] or "postgres") + (f":{quote(db['PASSWORD'])}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def _start_worker_process(tmp_path: Path) -> tuple[subprocess.Popen, Path]:
    """`celery -A config worker --pool=solo` as its own process, on the test database, the test's
    media folder and the same Redis database for broker and cache."""
    log = tmp_path / "worker.log"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": _database_url(),
        "REDIS_URL": REDIS,
        "MEDIA_ROOT": str(django_settings.MEDIA_ROOT),
        "OUTSIDE_IN_VAR_DIR": str(tmp_path / "var"),
    }
    celery = Path(sys.executable).parent / "celery"
    command = [str(celery), "-A", "config", "worker", "--pool=solo", "-l", "info"]
    command += ["--without-mingle", "--without-gossip", "--without-heartbeat"]
    with open(log, "wb") as out:
        process = subprocess.Popen(
            command,
            cwd=Path(__file__).resolve().parents[2],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return process, log


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.kill()
    process.wait(30)


def test_a_worker_killed_mid_import_leaves_nothing_and_the_retry_imports_once(
    plan, on_redis, tmp_path, monkeypatch
):
    total = 200_000
    record = new_import(plan, HEADER + rows(0, total), "big.csv")
    process, log = _start_worker_process(tmp_path)
    try:
        tasks.import_events.delay(record.pk)
        try:
            rows_read = wait_for(
                lambda: (cache.get(progress_key(record.pk)) or {}).get("rows"),
                what="the worker to start reading rows",
            )
        except AssertionError:
            raise AssertionError(log.read_text()[-3000:]) from None
        os.kill(process.pid, signal.SIGKILL)
        process.wait(30)
    finally:
        _stop(process)
    assert 0 < rows_read < total
    assert Event.objects.count() == 0  # its transaction was never committed
    record.refresh_from_db()
    assert record.status == "running"

    monkeypatch.setattr(progress, "STALE_AFTER_SECONDS", 1)
    wait_for(mark_stalled_imports, what="the import to be marked stalled", seconds=10)
    record.refresh_from_db()
    assert record.status == "failed"
    assert record.message == (
        "The import was interrupted before it finished. Nothing from it was saved; retry it to "
        "import the file again."
    )

    retried = run_import(record.pk)
    assert (retried.status, retried.rows_read, retried.rows_imported) == ("succeeded", total, total)
    assert Event.objects.count() == total
    assert Event.objects.values("dedupe_key").distinct().count() == total
    assert run_import(record.pk) is None
