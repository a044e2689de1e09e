"""Imports a person can recover from (issue, item 4): import the valid rows of a rejected file
without uploading it again, undo an import, a warning when an import moves the plan's latest
data, new event types highlighted on the event map, and non-ISO dates answered with the ISO form.

Every import goes through the real engine; the tests run on SQLite and on PostgreSQL."""

from __future__ import annotations

import csv
import datetime as dt
import io
import threading
from functools import partial

import pytest
import time_machine
from django.core.cache import cache
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from insights.models import (
    AsOfMove,
    AssumptionHistory,
    AssumptionRun,
    DigestDelivery,
    Event,
    Import,
)
from insights.services.digests import build_digest, data_moved
from insights.services.imports import create_import, run_import
from insights.services.imports.dates import DATE_REASON, DateHint, parse_occurred_at
from insights.services.retests import retest_plan, run_plan_retest, start_plan_retest
from insights.services.uploads import UndoRefused, import_valid_rows, undo_import
from lifecycle.models import EventMapping
from lifecycle.services import map_event_types
from planning import jobs
from planning.live.hub import changes_between
from planning.models import Activity, Assumption, Plan, StrategicChoice

pytestmark = pytest.mark.django_db

UTC = dt.UTC
HEADER = "customer_id,occurred_at,event_type,value\n"
# Four customers buy in October; the plan's latest data is then 31 Oct.
OCTOBER = HEADER + "".join(
    f"c{i},2026-10-{day:02}T10:00:00Z,purchase,10\n" for i, day in enumerate((5, 12, 20, 31))
)
# Six events dated a week later: the plan's latest data moves to 7 Nov.
NOVEMBER = HEADER + "".join(f"n{i},2026-11-0{i + 2}T09:00:00Z,visit,\n" for i in range(6))
# Two valid rows and one whose date is not ISO.
WITH_A_BAD_ROW = HEADER + (
    "b1,2026-10-06,purchase,5\nb2,03/04/2026,purchase,5\nb3,2026-10-07,chat,\n"
)


@pytest.fixture(autouse=True)
def _own_cache(settings):
    """Progress lives in the cache: one of this test's own."""
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    cache.clear()


def load(plan, content, *, name="events.csv", user=None, mode=Import.Mode.ALL_OR_NOTHING):
    record = create_import(plan, io.BytesIO(content.encode()), name, user=user, mode=mode)
    run_import(record.pk)
    record.refresh_from_db()
    return record


def job_names(callbacks) -> list[str]:
    """The background jobs among the on-commit callbacks, by task name."""
    return [c.args[0] for c in callbacks if isinstance(c, partial) and c.func is jobs.send]


def detail(persona, record, **headers):
    url = reverse("insights:import_detail", args=[record.plan.slug, record.pk])
    return persona.client.get(url, headers=headers)


def undo_url(record) -> str:
    return reverse("insights:import_undo", args=[record.plan.slug, record.pk])


def valid_rows_url(record) -> str:
    return reverse("insights:import_valid_rows", args=[record.plan.slug, record.pk])


def an_assumption_with_a_test(plan) -> Assumption:
    choice = StrategicChoice.objects.create(plan=plan, title="Win buyers", position=0)
    return Assumption.objects.create(
        choice=choice,
        statement="At least one customer buys",
        metric="active_customers",
        params={"event_type": "purchase"},
        comparator=">=",
        threshold=1,
        position=0,
    )


# --- undo an import -----------------------------------------------------------------------------


def test_undo_deletes_the_imports_events_in_one_statement_and_keeps_the_import(
    plan, cmo, django_capture_on_commit_callbacks
):
    october = load(plan, OCTOBER, user=cmo.user)
    november = load(plan, NOVEMBER, name="november.csv", user=cmo.user)
    before = Plan.objects.get(pk=plan.pk)
    with (
        CaptureQueriesContext(connection) as queries,
        django_capture_on_commit_callbacks() as callbacks,
    ):
        undone = undo_import(november, user=cmo.user)
    assert undone is not None
    assert undone.events == 6
    # One DELETE, by the import's id; Django never collected the events to delete them one by one.
    sqls = [q["sql"] for q in queries]
    deletes = [sql for sql in sqls if sql.lstrip().upper().startswith("DELETE")]
    assert len(deletes) == 1
    assert "insights_event" in deletes[0]
    assert "source_import_id" in deletes[0]
    assert not any('"insights_event"."id"' in sql for sql in sqls)
    # Only that import's events went.
    assert set(Event.objects.values_list("source_import_id", flat=True)) == {october.pk}
    assert Event.objects.count() == 4
    # The import is kept for the record, with its figures and its file.
    november.refresh_from_db()
    assert november.status == Import.Status.UNDONE
    assert november.undone_by == cmo.user
    assert november.undone_at is not None
    assert november.rows_imported == 6
    assert november.file.read().decode() == NOVEMBER
    # What was computed from the data follows, as after an import.
    after = Plan.objects.get(pk=plan.pk)
    assert after.data_version == before.data_version + 1
    assert job_names(callbacks) == [
        "insights.tasks.compute_plan_history",
        "insights.tasks.compute_customer_value",
    ]
    # The plan's latest data went back with it.
    assert undone.as_of_before == dt.datetime(2026, 11, 7, 9, 0, tzinfo=UTC)
    assert undone.as_of_after == dt.datetime(2026, 10, 31, 10, 0, tzinfo=UTC)


def test_undo_is_recorded_as_activity_and_open_boards_hear_of_it(plan, facilitator, cmo):
    november = load(plan, NOVEMBER, name="november.csv", user=cmo.user)
    version = Plan.objects.get(pk=plan.pk).version
    since = Activity.objects.filter(plan=plan).order_by("-id").values_list("id", flat=True).first()
    undo_import(november, user=facilitator.user)
    activity = Activity.objects.get(plan=plan, item_type="import")
    assert (activity.actor, activity.action, activity.item_id, activity.item_label) == (
        facilitator.user,
        Activity.Action.REVERTED,
        november.pk,
        "november.csv",
    )
    assert activity.before == {"status": "Imported", "events": 6, "latest event": "7 Nov 2026"}
    assert activity.after == {"status": "Undone", "events": 0, "latest event": ""}
    assert Plan.objects.get(pk=plan.pk).version == version + 1
    # The live stream tells open boards to draw themselves again.
    changes = changes_between(plan.pk, plan.slug, since or 0, activity.pk)
    assert changes == [{"key": f"import-{november.pk}", "url": "", "refresh": "board"}]
    # The activity page shows it, by the import's name, among the imports' changes.
    page = facilitator.client.get(reverse("planning:activity", args=[plan.slug])).content.decode()
    assert f'<a href="?type=import&amp;item={november.pk}">' in page
    assert "november.csv" in page


def test_undo_recomputes_the_histories_on_the_remaining_data(
    plan, cmo, tasks_inline, django_capture_on_commit_callbacks
):
    assumption = an_assumption_with_a_test(plan)
    load(plan, OCTOBER, user=cmo.user)
    november = load(plan, HEADER + "late,2026-11-20,purchase,3\n", user=cmo.user)
    with django_capture_on_commit_callbacks(execute=True):
        undo_import(november, user=cmo.user)
    plan.refresh_from_db()
    history = AssumptionHistory.objects.get(assumption=assumption, data_version=plan.data_version)
    assert history.status == AssumptionHistory.Status.READY
    assert history.as_of == dt.datetime(2026, 10, 31, 10, 0, tzinfo=UTC)
    assert history.points[-1]["observed"] == 4  # the four October buyers, not the fifth


def test_undo_happens_once(plan, cmo, django_capture_on_commit_callbacks):
    november = load(plan, NOVEMBER, user=cmo.user)
    assert undo_import(november, user=cmo.user) is not None
    version = Plan.objects.get(pk=plan.pk).data_version
    with django_capture_on_commit_callbacks() as callbacks:
        assert undo_import(november, user=cmo.user) is None  # a second click
    assert callbacks == []
    assert Plan.objects.get(pk=plan.pk).data_version == version
    assert Activity.objects.filter(item_type="import").count() == 1


def test_only_a_succeeded_import_can_be_undone(plan, cmo):
    rejected = load(plan, WITH_A_BAD_ROW, user=cmo.user)
    assert rejected.status == Import.Status.REJECTED
    assert undo_import(rejected, user=cmo.user) is None
    rejected.refresh_from_db()
    assert rejected.status == Import.Status.REJECTED
    assert not rejected.can_be_undone_by(cmo.membership)


@pytest.mark.skipif("connection.vendor != 'postgresql'")
@pytest.mark.django_db(transaction=True)  # the import commits, and lets go of the plan's lock
def test_undo_waits_for_no_import_storing_into_the_plan(plan, cmo):
    """An import stores under the plan's lock: undo is refused, not blocked, while it does."""
    november = load(plan, NOVEMBER, user=cmo.user)
    held, release = threading.Event(), threading.Event()

    def storing_import():  # another connection, as a worker's would be
        other = connections.create_connection("default")
        try:
            with other.cursor() as cursor:
                cursor.execute("SET lock_timeout = '10s'")
                cursor.execute("SELECT pg_advisory_lock(7310, %s)", [plan.pk])
                held.set()
                release.wait(10)
                cursor.execute("SELECT pg_advisory_unlock(7310, %s)", [plan.pk])
        finally:
            other.close()

    worker = threading.Thread(target=storing_import)
    worker.start()
    try:
        assert held.wait(10)
        with pytest.raises(UndoRefused, match="Another import is storing events"):
            undo_import(november, user=cmo.user)
    finally:
        release.set()
        worker.join()
    november.refresh_from_db()
    assert november.status == Import.Status.SUCCEEDED
    assert Event.objects.count() == 6
    assert undo_import(november, user=cmo.user) is not None


def test_undo_asks_for_confirmation_then_undoes(plan, cmo):
    november = load(plan, NOVEMBER, name="november.csv", user=cmo.user)
    page = detail(cmo, november).content.decode()
    assert f'href="{undo_url(november)}"' in page
    assert "Undo this import…" in page
    # The confirmation is a page (or, with HTMX, the import's status in place): nothing changes.
    confirm = cmo.client.get(undo_url(november))
    assert confirm.status_code == 200
    html = confirm.content.decode()
    assert "Undo this import?" in html
    assert "Its 6 events are deleted from the plan." in html
    assert f'<form method="post" action="{undo_url(november)}"' in html
    assert ">Keep it</a>" in html
    assert Event.objects.count() == 6
    fragment = cmo.client.get(undo_url(november), headers={"HX-Request": "true"}).content.decode()
    assert "<html" not in fragment
    assert "Undo this import?" in fragment
    # Confirmed: undone, back on the import's page, which says so.
    response = cmo.client.post(undo_url(november))
    assert response.status_code == 302
    assert response.headers["Location"] == reverse(
        "insights:import_detail", args=[plan.slug, november.pk]
    )
    assert Event.objects.count() == 0
    page = cmo.client.get(response.headers["Location"]).content.decode()
    assert (
        "The import is undone: its 6 events were deleted. The plan has no customer data now."
        in page
    )
    assert "Undone by Ana Tester on" in page
    assert "Undo this import…" not in page
    # Nothing left to confirm: the undo page sends back to the import's.
    assert cmo.client.get(undo_url(november)).status_code == 302
    listing = cmo.client.get(reverse("insights:imports", args=[plan.slug])).content.decode()
    assert '<span class="badge badge-import-undone">Undone</span>' in listing


def test_an_htmx_undo_returns_the_status_in_place(plan, cmo):
    november = load(plan, NOVEMBER, user=cmo.user)
    response = cmo.client.post(undo_url(november), headers={"HX-Request": "true"})
    assert response.status_code == 200
    html = response.content.decode()
    assert "<html" not in html
    assert '<section id="import-status"' in html
    assert "<h3>Undone</h3>" in html
    assert Import.objects.get().status == Import.Status.UNDONE


def test_the_confirmation_names_later_imports_whose_duplicates_go_too(plan, cmo):
    october = load(plan, OCTOBER, name="october.csv", user=cmo.user)
    again = load(plan, OCTOBER + "c9,2026-10-30,visit,\n", name="october-again.csv", user=cmo.user)
    assert again.rows_duplicate == 4
    html = cmo.client.get(undo_url(october)).content.decode()
    assert "Later imports skipped rows the plan already held" in html
    assert ">october-again.csv</a>: 4" in html
    # A later import with no duplicates is not named.
    assert "Later imports skipped" not in cmo.client.get(undo_url(again)).content.decode()


def test_who_may_undo_an_import(plan, cmo, cio, facilitator, observer, outsider):
    """The uploader undoes their own import at once; a facilitator any import; another editor
    not a colleague's data; an observer nothing; an outsider learns nothing."""
    mine = load(plan, NOVEMBER, user=cmo.user)
    assert outsider.client.get(undo_url(mine)).status_code == 404
    assert outsider.client.post(undo_url(mine)).status_code == 404
    assert observer.client.post(undo_url(mine)).status_code == 403
    assert cio.client.get(undo_url(mine)).status_code == 403
    assert cio.client.post(undo_url(mine)).status_code == 403
    assert "Undo this import" not in detail(cio, mine).content.decode()
    assert "Undo this import" not in detail(observer, mine).content.decode()
    assert cmo.client.put(undo_url(mine)).status_code == 405
    assert Import.objects.get().status == Import.Status.SUCCEEDED
    # The facilitator may, for anyone's import.
    assert "Undo this import…" in detail(facilitator, mine).content.decode()
    assert facilitator.client.post(undo_url(mine)).status_code == 302
    assert Import.objects.get().status == Import.Status.UNDONE
    # The uploader may, for their own.
    theirs = load(plan, OCTOBER, user=cio.user)
    assert cio.client.post(undo_url(theirs)).status_code == 302
    assert Import.objects.get(pk=theirs.pk).status == Import.Status.UNDONE
    assert Event.objects.count() == 0


# --- import the valid rows of a rejected file ---------------------------------------------------


def test_a_rejected_import_imports_its_valid_rows_without_a_new_upload(
    plan, cmo, tasks_inline, django_capture_on_commit_callbacks
):
    record = load(plan, WITH_A_BAD_ROW, user=cmo.user)
    assert record.status == Import.Status.REJECTED
    old_rejected = record.rejected_file.name
    storage = record.rejected_file.storage
    assert storage.exists(old_rejected)
    page = detail(cmo, record).content.decode()
    assert f'<form method="post" action="{valid_rows_url(record)}"' in page
    assert "Import the valid rows</button>" in page
    assert "The 2 valid rows of the file you uploaded, without the 1 with errors" in page
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = cmo.client.post(valid_rows_url(record))
    assert response.status_code == 302
    assert job_names(callbacks)[0] == "insights.tasks.import_events"
    assert Import.objects.count() == 1  # the same import, its file as it was uploaded
    record.refresh_from_db()
    assert record.status == Import.Status.SUCCEEDED
    assert record.mode == Import.Mode.SKIP_INVALID
    assert (record.rows_read, record.rows_imported, record.rows_rejected) == (3, 2, 1)
    assert record.file.read().decode() == WITH_A_BAD_ROW
    assert sorted(Event.objects.values_list("customer_id", flat=True)) == ["b1", "b3"]
    # The rejected rows are written again, and the old copy is gone.
    assert [e["value"] for e in record.errors] == ["03/04/2026"]
    assert record.rejected_file.name
    assert storage.exists(record.rejected_file.name)
    assert record.rejected_file.name == old_rejected or not storage.exists(old_rejected)
    # Once started, again (a second click) starts nothing.
    with django_capture_on_commit_callbacks() as callbacks:
        assert cmo.client.post(valid_rows_url(record)).status_code == 302
        assert not import_valid_rows(record)
    assert callbacks == []


def test_import_the_valid_rows_is_offered_only_where_there_are_some(plan, cmo):
    binary = create_import(plan, io.BytesIO(b"\x89PNG\r\n\x1a\n\x00\x00"), "photo.csv")
    run_import(binary.pk)
    binary.refresh_from_db()
    every_row_bad = load(plan, HEADER + "x,yesterday,visit,\n")
    skipped = load(plan, WITH_A_BAD_ROW, mode=Import.Mode.SKIP_INVALID)
    for record, status in [
        (binary, Import.Status.REJECTED),
        (every_row_bad, Import.Status.REJECTED),
        (skipped, Import.Status.SUCCEEDED),
    ]:
        assert record.status == status
        assert not record.rejected_for_its_rows
        assert "Import the valid rows</button>" not in detail(cmo, record).content.decode()
        assert not import_valid_rows(record)
        record.refresh_from_db()
        assert record.status == status


def test_import_the_valid_rows_is_for_editors_by_post(
    plan, cmo, observer, outsider, django_capture_on_commit_callbacks
):
    record = load(plan, WITH_A_BAD_ROW, user=cmo.user)
    with django_capture_on_commit_callbacks() as callbacks:
        assert cmo.client.get(valid_rows_url(record)).status_code == 405
        assert observer.client.post(valid_rows_url(record)).status_code == 403
        assert outsider.client.post(valid_rows_url(record)).status_code == 404
    assert callbacks == []
    assert "Import the valid rows</button>" not in detail(observer, record).content.decode()
    assert Import.objects.get().status == Import.Status.REJECTED


def test_import_the_valid_rows_by_htmx_returns_the_status_in_place(plan, cmo):
    record = load(plan, WITH_A_BAD_ROW, user=cmo.user)
    response = cmo.client.post(valid_rows_url(record), headers={"HX-Request": "true"})
    html = response.content.decode()
    assert "<html" not in html
    assert 'hx-trigger="every 1s"' in html  # queued: the status polls until it is done
    assert Import.objects.get().status == Import.Status.PENDING


# --- an import that moves the plan's latest data ------------------------------------------------


def test_an_import_a_week_ahead_says_it_moves_every_windowed_metric(plan, cmo):
    first = load(plan, OCTOBER, user=cmo.user)
    # The first import has nothing to move: the plan had no data.
    assert (first.as_of_before, first.as_of_after) == (
        None,
        dt.datetime(2026, 10, 31, 10, 0, tzinfo=UTC),
    )
    assert first.as_of_move is None
    assert "moves the plan's latest data" not in detail(cmo, first).content.decode()
    november = load(plan, NOVEMBER, user=cmo.user)
    assert november.as_of_before == dt.datetime(2026, 10, 31, 10, 0, tzinfo=UTC)
    assert november.as_of_after == dt.datetime(2026, 11, 7, 9, 0, tzinfo=UTC)
    page = detail(cmo, november).content.decode()
    assert (
        "This import moves the plan's latest data from 31 Oct to 7 Nov: every windowed "
        "metric now ends on 7 Nov." in page
    )
    assert "the 7 days after 31 Oct are now inside every window" in page


def test_the_next_days_data_moves_nothing_worth_saying(plan, cmo):
    load(plan, OCTOBER, user=cmo.user)
    next_day = load(plan, HEADER + "d1,2026-11-01T23:59:00Z,visit,\n", user=cmo.user)
    assert next_day.as_of_after == dt.datetime(2026, 11, 1, 23, 59, tzinfo=UTC)
    assert next_day.as_of_move is None
    assert "moves the plan" not in detail(cmo, next_day).content.decode()
    # Older rows (a backfill) leave the latest data where it was.
    backfill = load(plan, HEADER + "old,2026-09-01,visit,\n", user=cmo.user)
    assert backfill.as_of_before == backfill.as_of_after
    assert backfill.as_of_move is None


def test_a_move_is_counted_in_calendar_days():
    late = dt.datetime(2026, 10, 31, 23, 0, tzinfo=UTC)
    assert AsOfMove.between(late, dt.datetime(2026, 11, 1, 23, 59, tzinfo=UTC)) is None
    move = AsOfMove.between(late, dt.datetime(2026, 11, 2, 0, 30, tzinfo=UTC))
    assert move is not None
    assert (move.days, move.forward, move.day_format) == (2, True, "j M")
    back = AsOfMove.between(late, dt.datetime(2026, 10, 20, tzinfo=UTC))
    assert back is not None
    assert (back.days, back.forward) == (-11, False)
    new_year = AsOfMove.between(late, dt.datetime(2027, 1, 4, tzinfo=UTC))
    assert new_year is not None
    assert new_year.day_format == "j M Y"
    assert AsOfMove.between(None, late) is None


def retest(plan, trigger="scheduled"):
    record = start_plan_retest(plan, trigger=trigger)
    return run_plan_retest(record.pk)


def test_the_retest_and_its_digest_say_when_the_data_moved(plan, cmo):
    an_assumption_with_a_test(plan)
    with time_machine.travel(dt.datetime(2026, 11, 1, 8, tzinfo=UTC)):
        load(plan, OCTOBER, user=cmo.user)
        first = retest(plan)
    assert data_moved(first) is None  # nothing to compare with
    with time_machine.travel(dt.datetime(2026, 11, 8, 7, tzinfo=UTC)):
        november = load(plan, NOVEMBER, name="november.csv", user=cmo.user)
    with time_machine.travel(dt.datetime(2026, 11, 8, 8, tzinfo=UTC)):
        second = retest(plan)
    said = (
        "The plan's latest data moved from 31 Oct to 7 Nov since the previous re-test: every "
        "windowed metric now ends on 7 Nov. Imported since: november.csv."
    )
    moved = data_moved(second)
    assert moved is not None
    assert moved.sentence == said
    page = cmo.client.get(reverse("insights:retest", args=[plan.slug, second.pk])).content
    assert said.replace("'", "&#x27;") in page.decode()
    delivery = DigestDelivery.objects.create(retest=second, membership=cmo.membership)
    message = build_digest(delivery)
    assert said in message.body
    assert said.replace("'", "&#x27;") in message.alternatives[0].content
    # Undone, the data moves back; the next re-test says that too.
    with time_machine.travel(dt.datetime(2026, 11, 9, 7, tzinfo=UTC)):
        undo_import(november, user=cmo.user)
    with time_machine.travel(dt.datetime(2026, 11, 9, 8, tzinfo=UTC)):
        third = retest(plan)
    back = data_moved(third)
    assert back is not None
    assert back.sentence == (
        "The plan's latest data moved back from 7 Nov to 31 Oct since the previous re-test: "
        "every windowed metric now ends on 31 Oct. Undone since: november.csv."
    )


def test_a_scheduled_retest_compares_with_the_previous_scheduled_one(plan, cmo):
    """The digest's readers saw the last scheduled re-test, not the manual ones since."""
    an_assumption_with_a_test(plan)
    with time_machine.travel(dt.datetime(2026, 11, 1, 8, tzinfo=UTC)):
        load(plan, OCTOBER, user=cmo.user)
        retest(plan)
    with time_machine.travel(dt.datetime(2026, 11, 8, 7, tzinfo=UTC)):
        load(plan, NOVEMBER, user=cmo.user)
    with time_machine.travel(dt.datetime(2026, 11, 8, 8, tzinfo=UTC)):
        manual = retest(plan, trigger="manual")
    with time_machine.travel(dt.datetime(2026, 11, 9, 8, tzinfo=UTC)):
        scheduled = retest(plan)
    assert data_moved(manual) is not None
    moved = data_moved(scheduled)
    assert moved is not None
    assert (moved.move.before.day, moved.move.after.day) == (31, 7)


def test_runs_from_the_command_line_count_as_the_previous_retest(plan, cmo):
    an_assumption_with_a_test(plan)
    with time_machine.travel(dt.datetime(2026, 11, 1, 8, tzinfo=UTC)):
        load(plan, OCTOBER, user=cmo.user)
        retest_plan(plan, trigger=AssumptionRun.Trigger.COMMAND)  # runs of no PlanRetest
    with time_machine.travel(dt.datetime(2026, 11, 8, 7, tzinfo=UTC)):
        load(plan, NOVEMBER, name="november.csv", user=cmo.user)
    with time_machine.travel(dt.datetime(2026, 11, 8, 8, tzinfo=UTC)):
        manual = retest(plan, trigger="manual")
    moved = data_moved(manual)
    assert moved is not None
    assert moved.sentence.endswith("now ends on 7 Nov. Imported since: november.csv.")


# --- new event types on the event map -----------------------------------------------------------


def test_event_types_on_no_stage_are_highlighted_first_with_the_suggested_stage(
    plan, cmo, facilitator
):
    load(
        plan,
        HEADER + "a,2026-10-01,zz_custom,\nb,2026-10-01,support_ticket,\nc,2026-10-01,visit,\n",
    )
    stages = {stage.name: stage for stage in plan.stages.all()}
    map_event_types(plan.pk, {"visit": stages["Explore"], "renewal": stages["Engage"]})
    url = reverse("insights:event_map", args=[plan.slug])
    page = facilitator.client.get(url).content.decode()
    assert (
        "2 event types in your data are on no stage yet:</strong> support_ticket, zz_custom."
        in page
    )
    rows = page.split("<tbody>")[1].split("</tbody>")[0].split("<tr")[1:]
    # Those on no stage first, highlighted; then the mapped ones, not.
    assert [row.split('for="stage-')[1].split('"')[0] for row in rows] == [
        "support_ticket",
        "zz_custom",
        "renewal",
        "visit",
    ]
    assert [' class="row-unmapped"' in row for row in rows] == [True, True, False, False]
    assert "Not on a stage yet" in rows[0]
    assert f'<option value="{stages["Ask"].pk}" selected>Ask (suggested)</option>' in rows[0]
    assert "selected" not in rows[1]  # no stage suggested by its name: chosen by a person
    assert "(not in the data yet)" in rows[2]
    # Saved as suggested: nothing is highlighted any more.
    facilitator.client.post(
        url,
        {
            "stage_support_ticket": str(stages["Ask"].pk),
            "stage_zz_custom": str(stages["Use"].pk),
            "stage_visit": str(stages["Explore"].pk),
            "stage_renewal": str(stages["Engage"].pk),
        },
    )
    assert EventMapping.objects.get(plan=plan, event_type="support_ticket").stage == stages["Ask"]
    page = facilitator.client.get(url).content.decode()
    assert "row-unmapped" not in page
    assert "on no stage yet" not in page
    # A member who cannot change the map is told who can.
    load(plan, HEADER + "d,2026-10-02,referral,\n")
    assert "A facilitator can put it on a stage." in cmo.client.get(url).content.decode()


# --- non-ISO dates: the form the file should use -----------------------------------------------


@pytest.mark.parametrize(
    ("value", "iso", "form"),
    [
        ("25/04/2026", "2026-04-25", "YYYY-MM-DD"),
        ("04/25/2026", "2026-04-25", "YYYY-MM-DD"),
        ("04/04/2026", "2026-04-04", "YYYY-MM-DD"),
        ("3.4.2026", "2026-04-03", "YYYY-MM-DD"),  # dotted dates put the day first
        ("2026/4/3", "2026-04-03", "YYYY-MM-DD"),
        ("2026-4-3", "2026-04-03", "YYYY-MM-DD"),
        ("3 Apr 2026", "2026-04-03", "YYYY-MM-DD"),
        ("April 3, 2026", "2026-04-03", "YYYY-MM-DD"),
        ("Sept 3rd 2026", "2026-09-03", "YYYY-MM-DD"),
        ("03-Apr-2026 14:05", "2026-04-03T14:05", "YYYY-MM-DDTHH:MM"),
        ("25/04/2026 2:05:09 PM", "2026-04-25T14:05:09", "YYYY-MM-DDTHH:MM:SS"),
        ("12/25/2026 12:00 am", "2026-12-25T00:00", "YYYY-MM-DDTHH:MM"),
        ("25/04/2026 14:05+0100", "2026-04-25T14:05+01:00", "YYYY-MM-DDTHH:MM+HH:MM"),
    ],
)
def test_a_date_written_another_way_is_answered_with_its_iso_form(value, iso, form):
    assert DateHint().reason(value) == f"{value} is not an ISO date: write {iso} ({form})"
    parse_occurred_at(iso)  # what it proposes, the import takes


@pytest.mark.parametrize(
    "value",
    [
        "yesterday",
        "03/04/26",  # a two-digit year
        "31/02/2026",  # no such day either way
        "2026-13-01",
        "2026-02-30",
        "3 Foo 2026",
        "25/04/2026 25:00",
        "0001-01-01T00:00:00+05:00",  # ISO already, out of range: nothing better to propose
    ],
)
def test_a_value_that_cannot_be_read_as_a_date_gets_the_expected_format(value):
    assert DateHint().reason(value) == DATE_REASON


def test_a_day_and_month_that_could_swap_get_both_readings_until_the_file_tells():
    hint = DateHint()
    assert hint.reason("03/04/2026") == (
        "03/04/2026 is not an ISO date: write 2026-04-03 if the day comes first, 2026-03-04 if "
        "the month does (YYYY-MM-DD)"
    )
    assert hint.reason("25/04/2026").endswith("write 2026-04-25 (YYYY-MM-DD)")
    assert hint.reason("03/04/2026") == (
        "03/04/2026 is not an ISO date: write 2026-04-03 (YYYY-MM-DD; this file writes the day "
        "first)"
    )
    american = DateHint()
    american.reason("12/25/2026")
    assert american.reason("03/04/2026 09:30") == (
        "03/04/2026 09:30 is not an ISO date: write 2026-03-04T09:30 (YYYY-MM-DDTHH:MM; this "
        "file writes the month first)"
    )


def test_a_rejected_row_names_the_iso_form_on_the_page_and_in_the_rejected_rows(plan, cmo):
    record = load(plan, HEADER + "a,13/04/2026,visit,\nb,05/04/2026,visit,\nc,later,visit,\n")
    reasons = [(e["line"], e["value"], e["reason"]) for e in record.errors]
    assert reasons == [
        (2, "13/04/2026", "13/04/2026 is not an ISO date: write 2026-04-13 (YYYY-MM-DD)"),
        (
            3,
            "05/04/2026",
            "05/04/2026 is not an ISO date: write 2026-04-05 (YYYY-MM-DD; this file writes the "
            "day first)",
        ),
        (4, "later", DATE_REASON),
    ]
    with record.rejected_file.open("rb") as stream:
        rows = list(csv.reader(io.StringIO(stream.read().decode())))
    assert rows[1][:2] == [
        "2",
        "occurred_at: 13/04/2026 is not an ISO date: write 2026-04-13 (YYYY-MM-DD)",
    ]
    page = detail(cmo, record).content.decode()
    assert "<td>13/04/2026 is not an ISO date: write 2026-04-13 (YYYY-MM-DD)</td>" in page
