"""The upload flow in the web app: upload, check columns, start, see the result."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from insights.models import Event, Import
from insights.services.uploads import retry_import, start_import
from lifecycle.models import EventMapping
from lifecycle.services import map_event_types

pytestmark = pytest.mark.django_db

CSV = (
    "client;occurred_at;event_type;value;campaign\n"
    "c1;2026-03-01;purchase;10.50;spring\n"
    "c2;2026-03-02;visit;;spring\n"
    "c3;2026-13-01;visit;;autumn\n"
)


def upload(persona, plan, content=CSV, name="events.csv"):
    return persona.client.post(
        reverse("insights:imports", args=[plan.slug]),
        {"file": SimpleUploadedFile(name, content.encode(), content_type="text/csv")},
    )


def start(persona, record, **fields):
    data = {
        "column_0": "customer_id",
        "column_1": "occurred_at",
        "column_2": "event_type",
        "column_3": "value",
        "column_4": "",
        "mode": "skip_invalid",
    }
    data.update(fields)
    return persona.client.post(
        reverse("insights:import_start", args=[record.plan.slug, record.pk]), data
    )


def test_upload_keeps_the_file_and_shows_the_columns_to_check(plan, cmo):
    response = upload(cmo, plan)
    record = Import.objects.get()
    assert response.status_code == 302
    assert response.headers["Location"] == reverse(
        "insights:import_detail", args=[plan.slug, record.pk]
    )
    assert record.status == "draft"
    assert record.file.read().decode() == CSV
    page = cmo.client.get(response.headers["Location"]).content.decode()
    assert "semicolon-separated" in page
    assert '<th scope="col">client</th>' in page
    # occurred_at is matched by name, client is not: the user maps it.
    assert '<option value="occurred_at" selected>' in page
    assert Event.objects.count() == 0


def test_renamed_column_mapped_and_valid_rows_imported(
    plan, cmo, tasks_inline, django_capture_on_commit_callbacks
):
    upload(cmo, plan)
    record = Import.objects.get()
    with django_capture_on_commit_callbacks(execute=True):
        response = start(cmo, record)
    assert response.status_code == 302
    record.refresh_from_db()
    assert record.status == "succeeded"
    assert (record.rows_read, record.rows_imported, record.rows_rejected) == (3, 2, 1)
    assert sorted(Event.objects.values_list("customer_id", flat=True)) == ["c1", "c2"]
    assert Event.objects.get(customer_id="c1").attributes == {"campaign": "spring"}
    page = cmo.client.get(
        reverse("insights:import_detail", args=[plan.slug, record.pk])
    ).content.decode()
    assert "<td>4</td><td>occurred_at</td><td><code>2026-13-01</code></td>" in page
    assert "New event types:" in page
    rejected = cmo.client.get(reverse("insights:import_rejected", args=[plan.slug, record.pk]))
    assert b"".join(rejected.streaming_content).decode().splitlines()[1].startswith('"4",')


def test_all_or_nothing_imports_nothing(
    plan, cmo, tasks_inline, django_capture_on_commit_callbacks
):
    upload(cmo, plan)
    record = Import.objects.get()
    with django_capture_on_commit_callbacks(execute=True):
        start(cmo, record, mode="all_or_nothing")
    record.refresh_from_db()
    assert record.status == "rejected"
    assert Event.objects.count() == 0
    assert "Nothing was imported: 1 of 3 rows have errors" in record.message


def test_a_required_field_left_unmapped_is_explained(plan, cmo):
    upload(cmo, plan)
    record = Import.objects.get()
    response = start(cmo, record, column_0="")
    assert response.status_code == 400
    assert "Choose a column for Customer id (required)." in response.content.decode()
    record.refresh_from_db()
    assert record.status == "draft"


def test_a_binary_file_is_rejected_at_once_and_kept(plan, cmo):
    upload(cmo, plan, content="\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", name="photo.csv")
    record = Import.objects.get()
    page = cmo.client.get(
        reverse("insights:import_detail", args=[plan.slug, record.pk])
    ).content.decode()
    assert "This is not a CSV text file: it contains binary data" in page
    record.refresh_from_db()
    assert record.status == "rejected"
    assert record.file.size > 0


def test_over_limit_upload_is_refused_with_sizes(plan, cmo, settings):
    settings.IMPORT_MAX_BYTES = 20
    response = upload(cmo, plan)
    assert response.status_code == 400
    assert "larger than the 20 bytes accepted" in response.content.decode()
    assert Import.objects.count() == 0


def test_progress_fragment_for_htmx(plan, cmo):
    upload(cmo, plan)
    record = Import.objects.get()
    Import.objects.filter(pk=record.pk).update(status="running", rows_read=0)
    response = cmo.client.get(
        reverse("insights:import_detail", args=[plan.slug, record.pk]),
        headers={"HX-Request": "true"},
    )
    html = response.content.decode()
    assert "<html" not in html
    assert 'hx-trigger="every 1s"' in html
    assert "<progress" in html


def test_observer_cannot_upload_or_start(plan, cmo, observer):
    assert upload(observer, plan).status_code == 403
    upload(cmo, plan)
    record = Import.objects.get()
    assert start(observer, record).status_code == 403
    assert Import.objects.get().status == "draft"


def test_outsider_gets_404_everywhere(plan, cmo, outsider):
    upload(cmo, plan)
    record = Import.objects.get()
    for name in ["import_detail", "import_rejected", "import_file"]:
        assert (
            outsider.client.get(
                reverse(f"insights:{name}", args=[plan.slug, record.pk])
            ).status_code
            == 404
        )
    assert outsider.client.get(reverse("insights:imports", args=[plan.slug])).status_code == 404
    assert upload(outsider, plan).status_code == 404
    assert start(outsider, record).status_code == 404


def test_start_is_post_only(plan, cmo):
    upload(cmo, plan)
    record = Import.objects.get()
    assert (
        cmo.client.get(reverse("insights:import_start", args=[plan.slug, record.pk])).status_code
        == 405
    )


def test_facilitator_maps_new_event_types_with_suggestions(plan, cmo, facilitator):
    Event.objects.create(
        plan=plan,
        customer_id="c",
        occurred_at="2026-01-01T00:00Z",
        event_type="support_ticket",
        dedupe_key=Event.identity("k", {}, 0),
    )
    page = facilitator.client.get(reverse("insights:event_map", args=[plan.slug])).content.decode()
    ask = plan.stages.get(name="Ask")
    assert f'<option value="{ask.pk}" selected>Ask (suggested)</option>' in page
    response = facilitator.client.post(
        reverse("insights:event_map", args=[plan.slug]), {"stage_support_ticket": str(ask.pk)}
    )
    assert response.status_code == 302
    assert EventMapping.objects.get(plan=plan).stage == ask
    # Only facilitators change the map.
    assert cmo.client.post(reverse("insights:event_map", args=[plan.slug]), {}).status_code == 403


# --- the workflows behind the pages: each status change is one service's (issue 15) -----------


def test_a_file_that_cannot_be_imported_is_rejected_by_the_upload_itself(plan, cmo):
    response = upload(cmo, plan, content="\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", name="photo.csv")
    record = Import.objects.get()
    assert response.headers["Location"] == reverse(
        "insights:import_detail", args=[plan.slug, record.pk]
    )
    # Before anyone opens its page: the POST decided, the page only shows it.
    assert record.status == Import.Status.REJECTED
    assert record.message.startswith("This is not a CSV text file: it contains binary data")
    assert record.file.size > 0


def test_a_drafts_page_changes_nothing_even_when_its_file_became_unreadable(
    plan, cmo, settings, django_capture_on_commit_callbacks
):
    upload(cmo, plan)  # five columns
    record = Import.objects.get()
    settings.IMPORT_MAX_COLUMNS = 4
    url = reverse("insights:import_detail", args=[plan.slug, record.pk])
    with CaptureQueriesContext(connection) as queries:
        page = cmo.client.get(url).content.decode()
    assert "This file cannot be imported" in page
    assert "This file has 5 columns; at most 4 are supported." in page
    assert "<select" not in page
    written = [q["sql"] for q in queries if q["sql"].lstrip().upper().startswith("UPDATE")]
    assert not any("insights_import" in sql for sql in written)
    record.refresh_from_db()
    assert (record.status, record.message) == (Import.Status.DRAFT, "")
    # Starting it (a POST) is what rejects it; nothing is sent to a worker.
    with django_capture_on_commit_callbacks() as enqueued:
        assert start(cmo, record).status_code == 302
    assert enqueued == []
    record.refresh_from_db()
    assert (record.status, record.message) == (
        Import.Status.REJECTED,
        "This file has 5 columns; at most 4 are supported.",
    )


def test_start_import_starts_a_draft_once(plan, cmo, django_capture_on_commit_callbacks):
    upload(cmo, plan)
    record = Import.objects.get()
    mapping = {"client": "customer_id", "occurred_at": "occurred_at", "event_type": "event_type"}
    with django_capture_on_commit_callbacks() as enqueued:
        assert start_import(record, mapping, Import.Mode.SKIP_INVALID)
        assert not start_import(record, mapping, Import.Mode.ALL_OR_NOTHING)  # a second click
    assert len(enqueued) == 1
    record.refresh_from_db()
    assert (record.status, record.mode, record.mapping) == (
        Import.Status.PENDING,
        Import.Mode.SKIP_INVALID,
        mapping,
    )


def failed_import(plan, persona) -> Import:
    upload(persona, plan)
    record = Import.objects.get()
    Import.objects.filter(pk=record.pk).update(
        status=Import.Status.FAILED,
        mapping={"client": "customer_id"},
        mode=Import.Mode.SKIP_INVALID,
        message="The import stopped on an unexpected problem.",
    )
    return record


def test_retry_runs_a_failed_import_again_once(
    plan, cmo, tasks_inline, django_capture_on_commit_callbacks
):
    record = failed_import(plan, cmo)
    url = reverse("insights:import_retry", args=[plan.slug, record.pk])
    with django_capture_on_commit_callbacks(execute=True) as enqueued:
        response = cmo.client.post(url)
    assert response.status_code == 302
    assert response.headers["Location"] == reverse(
        "insights:import_detail", args=[plan.slug, record.pk]
    )
    # The import, sent once; once it succeeded, the plan's histories (DOMAIN §10) and its
    # default lifetime-value report (§9) follow.
    assert [job.args[0] for job in enqueued] == [
        "insights.tasks.import_events",
        "insights.tasks.compute_plan_history",
        "insights.tasks.compute_customer_value",
    ]
    record.refresh_from_db()
    assert (record.status, record.rows_imported, record.message) == (
        Import.Status.SUCCEEDED,
        2,
        "",
    )
    # It has not failed now: retrying again (a second click, the back-office) sends nothing.
    with django_capture_on_commit_callbacks() as enqueued:
        cmo.client.post(url)
        assert not retry_import(record)
    assert enqueued == []
    assert Event.objects.count() == 2


def test_retry_is_for_editors_and_members_by_post(
    plan, cmo, observer, outsider, django_capture_on_commit_callbacks
):
    record = failed_import(plan, cmo)
    url = reverse("insights:import_retry", args=[plan.slug, record.pk])
    with django_capture_on_commit_callbacks() as enqueued:
        assert cmo.client.get(url).status_code == 405
        assert observer.client.post(url).status_code == 403
        assert outsider.client.post(url).status_code == 404
    assert enqueued == []
    record.refresh_from_db()
    assert record.status == Import.Status.FAILED


def test_a_facilitator_takes_an_event_type_off_the_map(plan, facilitator):
    stages = {stage.name: stage for stage in plan.stages.all()}
    map_event_types(plan.pk, {"visit": stages["Explore"], "chat": stages["Ask"]})
    response = facilitator.client.post(
        reverse("insights:event_map", args=[plan.slug]),
        {"stage_visit": "", "stage_chat": str(stages["Engage"].pk)},
    )
    assert response.status_code == 302
    mapped = dict(EventMapping.objects.filter(plan=plan).values_list("event_type", "stage__name"))
    assert mapped == {"chat": "Engage"}
    # The same in lifecycle's own service: None takes a type off the map, names as stored.
    saved = map_event_types(plan.pk, {" Chat ": None, "Purchase": stages["Buy"]})
    assert [m.event_type for m in saved] == ["purchase"]
    mapped = dict(EventMapping.objects.filter(plan=plan).values_list("event_type", "stage__name"))
    assert mapped == {"purchase": "Buy"}
