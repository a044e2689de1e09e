"""Back-office for customer data: imports, events (millions of rows) and assumption runs."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db import connections, transaction
from django.db.models import QuerySet
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import path, reverse
from django.utils.functional import cached_property
from django.utils.html import format_html

from lifecycle.admin import EventTypeForm
from planning.admin import HistoryAdmin, observed_badge, pretty_json, status_badge

from .models import (
    EVENT_FIELDS,
    AssumptionHistory,
    AssumptionRun,
    DigestDelivery,
    Event,
    Import,
    PlanDataSource,
    PlanRetest,
)
from .services.uploads import UndoRefused, retry_import, undo_import


class EstimatedCountPaginator(Paginator):
    """Pages through a huge table without counting it.

    Unfiltered on PostgreSQL, the planner's own estimate (`pg_class.reltuples`) stands in for
    COUNT(*) once the table is past `cap` rows. Otherwise the count stops at `cap` rows: a
    filter or search that matches more shows `cap` results, and pages beyond are not offered.
    """

    cap = 10_000

    @cached_property
    def count(self) -> int:  # type: ignore[override]
        queryset: QuerySet = self.object_list  # type: ignore[assignment]
        if not queryset.query.where:
            estimate = self._planner_estimate(queryset)
            if estimate is not None and estimate > self.cap:
                return estimate
        return min(queryset.order_by()[: self.cap + 1].count(), self.cap)

    @staticmethod
    def _planner_estimate(queryset: QuerySet) -> int | None:
        connection = connections[queryset.db]
        if connection.vendor != "postgresql":
            return None
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass",
                [connection.ops.quote_name(queryset.model._meta.db_table)],
            )
            row = cursor.fetchone()
        # -1: never analysed, so no estimate at all.
        return row[0] if row and row[0] >= 0 else None


class SortableByOnlyChangeList(ChangeList):
    """Honours `sortable_by` for hand-written `?o=` too, not just for the column links."""

    def get_ordering_field(self, field_name):
        if self.sortable_by is not None and field_name not in self.sortable_by:
            return None
        return super().get_ordering_field(field_name)


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    """Stays fast at millions of rows: no full count, no facets, no unindexed sort or search."""

    form = EventTypeForm
    paginator = EstimatedCountPaginator
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    list_display = ["id", "occurred_at", "customer_id", "event_type", "value", "plan"]
    list_select_related = ["plan"]
    # The plan filter lists plans (a small table) and narrows events through their index.
    list_filter = ["plan"]
    # Exact and case-sensitive: never LIKE '%…%' or UPPER(). There is no customer or event_id
    # index (each would slow every import, README "How events are stored"): filter by plan
    # first on a large table.
    search_fields = ["customer_id__exact", "event_id__exact"]
    search_help_text = "A customer id or an event id, exactly as imported."
    ordering = ["-id"]
    sortable_by = ["id"]
    raw_id_fields = ["plan", "source_import"]
    readonly_fields = ["dedupe_key"]
    fields = ["plan", "source_import", *EVENT_FIELDS, "attributes", "dedupe_key"]

    def get_changelist(self, request, **kwargs):
        return SortableByOnlyChangeList

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Events come from imports, which give each its identity (dedupe_key, DOMAIN §4).
        return False


@admin.register(Import)
class ImportAdmin(admin.ModelAdmin):
    list_display = [
        "original_name",
        "plan",
        "status",
        "rows_read",
        "rows_imported",
        "rows_duplicate",
        "rows_rejected",
        "uploaded_by",
        "created_at",
        "download",
    ]
    list_filter = ["status", "mode", "plan"]
    list_select_related = ["plan", "uploaded_by"]
    search_fields = ["original_name", "plan__name", "plan__slug", "uploaded_by__username"]
    date_hierarchy = "created_at"
    ordering = ["-created_at", "-id"]
    # The files an import keeps, each with its link text.
    DOWNLOADS = {"file": "Download", "rejected_file": "Rejected rows"}
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "plan",
                    "uploaded_by",
                    "download",
                    "download_rejected",
                    "original_name",
                    "size_bytes",
                ]
            },
        ),
        ("Reading the file", {"fields": ["mode", "mapping", "delimiter", "encoding"]}),
        (
            "Outcome",
            {
                "fields": [
                    "status",
                    "message",
                    "rows_read",
                    "rows_imported",
                    "rows_duplicate",
                    "rows_rejected",
                    "events",
                    "errors_json",
                ]
            },
        ),
        ("Timing", {"fields": ["created_at", "started_at", "finished_at", "heartbeat_at"]}),
    ]
    # Only what the importer reads is editable (then "Retry"); what it writes is not.
    readonly_fields = [
        str(name)
        for _, options in fieldsets
        for name in options["fields"]
        if name not in ("mode", "mapping")
    ]

    actions = ["retry"]

    @admin.action(description="Retry the selected failed imports")
    def retry(self, request: HttpRequest, queryset: QuerySet) -> None:
        # The app's own retry: conditional, as a worker may have claimed one meanwhile.
        failed = queryset.filter(status=Import.Status.FAILED)
        retried = sum(retry_import(upload) for upload in failed)
        skipped = queryset.count() - retried
        self.message_user(request, f"{retried} import(s) start again; {skipped} had not failed.")

    def has_add_permission(self, request: HttpRequest) -> bool:
        # An import is an uploaded file going through the importer, not a row typed in by hand.
        return False

    # Deleting an import takes its events through the app's own undo: one DELETE, a new data
    # version, the histories and the plan's activity, as "Undo this import" does. Its events
    # point at it without a constraint, so a plain delete would leave them in the plan.
    def delete_model(self, request: HttpRequest, obj: Import) -> None:
        undo_import(obj, user=request.user)
        super().delete_model(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        for upload in queryset:
            try:
                with transaction.atomic():
                    self.delete_model(request, upload)
            except UndoRefused as refusal:
                self.message_user(request, f"{upload}: {refusal}", messages.ERROR)

    def delete_view(self, request: HttpRequest, object_id: str, extra_context=None) -> HttpResponse:
        try:
            return super().delete_view(request, object_id, extra_context)
        except UndoRefused as refusal:  # the admin's transaction rolled the deletion back
            self.message_user(request, str(refusal), messages.ERROR)
            return redirect("admin:insights_import_change", object_id)

    def get_urls(self):
        download = self.admin_site.admin_view(self.download_view)
        return [
            path(
                "<path:object_id>/download/<str:which>/",
                download,
                name="insights_import_download",
            ),
            *super().get_urls(),
        ]

    def download_view(self, request: HttpRequest, object_id: str, which: str) -> FileResponse:
        """The kept file (or its rejected rows), through the admin: uploads hold customer data
        and are not served publicly."""
        if which not in self.DOWNLOADS:
            raise Http404("No such file.")
        upload = self.get_object(request, unquote(object_id))
        if upload is None:
            raise Http404("No such import.")
        if not self.has_view_permission(request, upload):
            raise PermissionDenied
        kept = getattr(upload, which)
        if not kept:
            raise Http404("This import has no such file.")
        try:
            handle = kept.open("rb")
        except FileNotFoundError:
            raise Http404("The kept file is missing from storage.") from None
        stem = upload.original_name.rsplit(".", 1)[0] or "import"
        name = upload.original_name if which == "file" else f"{stem}-rejected-rows.csv"
        return FileResponse(handle, as_attachment=True, filename=name)

    def _download_link(self, upload: Import, which: str) -> str:
        if not getattr(upload, which):
            return "—"
        url = reverse("admin:insights_import_download", args=[upload.pk, which])
        return format_html('<a href="{}">{}</a>', url, self.DOWNLOADS[which])

    @admin.display(description="file")
    def download(self, upload: Import) -> str:
        return self._download_link(upload, "file")

    @admin.display(description="rejected rows")
    def download_rejected(self, upload: Import) -> str:
        return self._download_link(upload, "rejected_file")

    @admin.display(description="events")
    def events(self, upload: Import) -> str:
        url = reverse("admin:insights_event_changelist")
        return format_html(
            '<a href="{}?source_import__id__exact={}">Events from this file</a>', url, upload.pk
        )

    @admin.display(description="errors")
    def errors_json(self, upload: Import) -> str:
        return pretty_json(upload.errors)


RUN_FIELDS = (
    "assumption",
    "plan",
    "retest",
    "trigger",
    "requested_by",
    "created_at",
    "as_of",
    "status",
    "previous_status",
    "changed",
    "observed",
    "n",
    "ci_low",
    "ci_high",
    "message",
    "duration_ms",
    "test_json",
)


HISTORY_FIELDS = (
    "assumption",
    "plan",
    "status",
    "period",
    "data_version",
    "as_of",
    "created_at",
    "computed_at",
    "duration_ms",
    "message",
    "test_json",
    "drift_json",
    "points_json",
    "key",
)


@admin.register(AssumptionHistory)
class AssumptionHistoryAdmin(HistoryAdmin):
    """What was computed from the data (DOMAIN §10): read to answer "why does the chart say
    that?"; recomputed by the app whenever the test or the data changes."""

    list_display = [
        "created_at",
        "assumption",
        "plan",
        "status",
        "period",
        "data_version",
        "points_count",
        "drifting",
    ]
    list_filter = ["status", "period", "plan"]
    list_select_related = ["assumption", "plan"]
    search_fields = ["assumption__statement", "plan__name", "plan__slug"]
    date_hierarchy = "created_at"
    ordering = ["-created_at", "-id"]
    fields = HISTORY_FIELDS
    readonly_fields = HISTORY_FIELDS

    @admin.display(description="points")
    def points_count(self, history: AssumptionHistory) -> int:
        return len(history.points or [])

    @admin.display(description="drifting", boolean=True)
    def drifting(self, history: AssumptionHistory) -> bool:
        return bool(history.drift)

    @admin.display(description="test")
    def test_json(self, history: AssumptionHistory) -> str:
        return pretty_json(history.test)

    @admin.display(description="drift")
    def drift_json(self, history: AssumptionHistory) -> str:
        return pretty_json(history.drift)

    @admin.display(description="points")
    def points_json(self, history: AssumptionHistory) -> str:
        return pretty_json(history.points)


@admin.register(AssumptionRun)
class AssumptionRunAdmin(HistoryAdmin):
    list_display = [
        "created_at",
        "assumption",
        "plan",
        "status_badge",
        "previous_status",
        "changed",
        "observed_badge",
        "trigger",
        "duration_ms",
    ]
    list_filter = ["status", "changed", "trigger", "plan"]
    list_select_related = ["assumption", "plan"]
    search_fields = ["assumption__statement", "plan__name", "plan__slug"]
    date_hierarchy = "created_at"
    ordering = ["-created_at", "-id"]
    fields = RUN_FIELDS
    readonly_fields = RUN_FIELDS

    @admin.display(description="status", ordering="status")
    def status_badge(self, run: AssumptionRun) -> str:
        return status_badge(run.status)

    @admin.display(description="observed", ordering="observed")
    def observed_badge(self, run: AssumptionRun) -> str:
        return observed_badge(run.assumption, run.observed, run.ci_low, run.ci_high, run.n)

    @admin.display(description="test")
    def test_json(self, run: AssumptionRun) -> Any:
        return pretty_json(run.test)


@admin.register(PlanRetest)
class PlanRetestAdmin(HistoryAdmin):
    list_display = [
        "created_at",
        "plan",
        "trigger",
        "status",
        "scheduled_for",
        "finished_at",
        "digests_queued_at",
        "runs",
    ]
    list_filter = ["status", "trigger", "plan"]
    list_select_related = ["plan"]
    search_fields = ["plan__name", "plan__slug"]
    date_hierarchy = "created_at"
    ordering = ["-created_at", "-id"]

    @admin.display(description="runs")
    def runs(self, retest: PlanRetest) -> str:
        url = reverse("admin:insights_assumptionrun_changelist")
        return format_html('<a href="{}?retest__id__exact={}">Runs</a>', url, retest.pk)


@admin.register(DigestDelivery)
class DigestDeliveryAdmin(admin.ModelAdmin):
    """Who was sent which digest, and what went wrong. Read-only; a delivery can be deleted."""

    list_display = ["created_at", "membership", "plan", "kind", "sent_at", "attempts"]
    list_filter = ["kind", ("sent_at", admin.EmptyFieldListFilter)]
    list_select_related = ["membership__user", "retest__plan"]
    search_fields = ["membership__user__username", "membership__user__email"]
    date_hierarchy = "created_at"
    ordering = ["-created_at", "-id"]

    @admin.display(description="plan")
    def plan(self, delivery: DigestDelivery) -> str:
        return str(delivery.retest.plan)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(PlanDataSource)
class PlanDataSourceAdmin(admin.ModelAdmin):
    """Where each plan's events live. The token is never here: only its variable's name."""

    list_display = ["plan", "engine", "url", "table", "last_check_ok", "last_checked_at"]
    list_filter = ["engine", "last_check_ok"]
    list_select_related = ["plan"]
    search_fields = ["plan__name", "plan__slug", "url", "table"]
    readonly_fields = ["last_checked_at", "last_check_ok", "last_check_message", "updated_at"]
    autocomplete_fields = ["plan"]
