"""The events' plan and import are kept by triggers (insights.integrity), not foreign keys: an
event cannot point at a missing plan or import, and deleting either deletes its events in the
database. Run on both databases: PostgreSQL checks once per statement, SQLite per row."""

from __future__ import annotations

import datetime as dt
import threading

import psycopg
import pytest
from django.core.management import call_command
from django.db import IntegrityError, connection, transaction

from insights import integrity
from insights.models import Event, Import
from planning.models import Plan
from planning.services import create_plan
from tests.conftest import REQUIRE_SERVICES

AT = dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC)


def event(plan_id: int, n: int, upload_id: int | None = None) -> Event:
    return Event(
        plan_id=plan_id,
        source_import_id=upload_id,
        customer_id=f"c{n}",
        occurred_at=AT + dt.timedelta(minutes=n),
        event_type="visit",
        dedupe_key=Event.identity(f"e{n}", {}, 0),
    )


def upload(plan: Plan) -> Import:
    return Import.objects.create(plan=plan, original_name="events.csv", file="imports/x.csv")


def refused(write) -> str:
    """The database's message when `write` is refused; fails the test when it is not."""
    try:
        with transaction.atomic():
            write()
    except IntegrityError as error:
        return str(error)
    pytest.fail("the database accepted an event whose plan or import does not exist")


@pytest.mark.django_db
def test_the_triggers_are_installed():
    assert integrity.installed(connection) == set(integrity.TRIGGERS)


@pytest.mark.django_db
def test_an_event_needs_an_existing_plan_and_import(plan):
    missing = Plan.objects.order_by("-pk").first().pk + 1000
    message = refused(lambda: Event.objects.bulk_create([event(plan.pk, 1), event(missing, 2)]))
    assert f"no plan with id {missing}" in message or "no such plan or import" in message
    message = refused(lambda: Event.objects.create(**_fields(event(plan.pk, 3, missing))))
    assert f"no import with id {missing}" in message or "no such plan or import" in message
    # The whole statement is refused: not even the valid rows went in.
    assert Event.objects.count() == 0
    # And an update cannot move an event to a missing plan.
    stored = Event.objects.create(**_fields(event(plan.pk, 4, upload(plan).pk)))
    refused(lambda: Event.objects.filter(pk=stored.pk).update(plan_id=missing))
    refused(lambda: Event.objects.filter(pk=stored.pk).update(source_import_id=missing))
    assert Event.objects.filter(plan=plan).count() == 1


def _fields(e: Event) -> dict:
    return {
        f.attname: getattr(e, f.attname) for f in Event._meta.concrete_fields if f.attname != "id"
    }


@pytest.mark.django_db
def test_deleting_a_plan_deletes_its_events_in_the_database(plan, django_assert_num_queries):
    other = create_plan("Other plan", "other-plan")
    first, second = upload(plan), upload(plan)
    Event.objects.bulk_create(
        [event(plan.pk, n, first.pk) for n in range(30)]
        + [event(plan.pk, n, second.pk) for n in range(30, 40)]
        + [event(plan.pk, n) for n in range(40, 45)]  # no import: the demo's, or the admin's
        + [event(other.pk, n) for n in range(20)]
    )
    captured = []
    with connection.execute_wrapper(
        lambda run, sql, *rest: captured.append(sql) or run(sql, *rest)
    ):
        Plan.objects.filter(pk=plan.pk).delete()
    # Django never reads the events to delete them: the triggers do.
    assert not [sql for sql in captured if "insights_event" in sql]
    assert Event.objects.filter(plan_id=plan.pk).count() == 0
    assert Event.objects.filter(plan=other).count() == 20


@pytest.mark.django_db
def test_deleting_an_import_deletes_its_events_only(plan):
    first, second = upload(plan), upload(plan)
    Event.objects.bulk_create(
        [event(plan.pk, n, first.pk) for n in range(30)]
        + [event(plan.pk, n, second.pk) for n in range(30, 40)]
    )
    first.delete()
    assert list(Event.objects.values_list("source_import_id", flat=True).distinct()) == [second.pk]
    # Plain SQL, past the ORM, keeps the rule too.
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM insights_import WHERE id = %s", [second.pk])
    assert Event.objects.count() == 0


@pytest.mark.django_db
def test_migrate_puts_back_triggers_a_table_rebuild_dropped():
    """SQLite drops a table's triggers when Django rebuilds the table for a migration."""
    integrity.uninstall(connection)
    assert integrity.installed(connection) == set()
    call_command("migrate", verbosity=0)
    assert integrity.installed(connection) == set(integrity.TRIGGERS)


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_a_plan_being_written_to_cannot_be_deleted_under_the_writer(db):
    """Like a foreign key, the check locks the plan (FOR KEY SHARE) until the writer commits:
    a delete meanwhile waits, then takes the new events with it, leaving none behind."""
    if connection.vendor != "postgresql":
        message = "row locks are PostgreSQL's; SQLite serialises writers (set DATABASE_URL)"
        if REQUIRE_SERVICES:
            pytest.fail(message + " and REQUIRE_SERVICES=1")
        pytest.skip(message)
    plan = Plan.objects.create(name="Bare", slug="bare")  # nothing else points at it
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    deleted = threading.Event()

    def delete_plan() -> None:
        with psycopg.connect(**params, autocommit=True) as other:
            other.execute("DELETE FROM planning_plan WHERE id = %s", [plan.pk])
        deleted.set()

    with transaction.atomic():
        Event.objects.bulk_create([event(plan.pk, n) for n in range(10)])
        deleter = threading.Thread(target=delete_plan)
        deleter.start()
        # The delete waits for this transaction.
        assert not deleted.wait(1.0)
    deleter.join(10)
    assert deleted.is_set()
    assert not Plan.objects.filter(pk=plan.pk).exists()
    assert Event.objects.count() == 0
