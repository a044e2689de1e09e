"""Customer-data pages: upload, column mapping, live progress, results, the event map."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import Count
from django.http import FileResponse, Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from lifecycle.models import EventMapping, Stage
from lifecycle.services import map_event_types, suggest_stage
from planning.http import AuthenticatedHttpRequest
from planning.models import Membership, Plan
from planning.views.access import get_plan_for_user, require_editor, require_facilitator

from ..forms import MappingForm, UploadForm
from ..metrics import MetricError
from ..models import Event, Import
from ..services.customer_panels import filter_options
from ..services.imports import FileRejected, preview_file, read_progress
from ..services.sources import plan_engine, spark_record
from ..services.uploads import (
    UndoRefused,
    check_draft,
    import_valid_rows,
    retry_import,
    start_import,
    undo_import,
    upload_import,
)


@require_http_methods(["GET", "POST"])
@login_required
def imports(request: AuthenticatedHttpRequest, slug: str) -> HttpResponse:
    plan, membership = get_plan_for_user(request.user, slug)
    form = UploadForm()
    refused = ""
    if request.method == "POST":
        require_editor(membership)
        # Refuse before Django reads a body of gigabytes into a temporary file.
        if int(request.META.get("CONTENT_LENGTH") or 0) > settings.IMPORT_MAX_BYTES:
            refused = f"The file is larger than the {settings.IMPORT_MAX_BYTES:,} bytes accepted."
        elif (form := UploadForm(request.POST, request.FILES)).is_valid():
            upload = form.cleaned_data["file"]
            try:
                record = upload_import(plan, upload, upload.name, user=request.user)
            except FileRejected as rejection:
                form.add_error("file", str(rejection))
            else:
                return redirect("insights:import_detail", slug=plan.slug, pk=record.pk)
    history = plan.imports.select_related("uploaded_by")[:50]
    return render(
        request,
        "insights/imports.html",
        {
            "plan": plan,
            "membership": membership,
            "form": form,
            "refused": refused,
            "imports": history,
            "max_bytes": settings.IMPORT_MAX_BYTES,
            "spark": spark_record(plan),
        },
        status=400 if form.errors or refused else 200,
    )


def _get_import(plan_id: int, pk: int) -> Import:
    return get_object_or_404(
        Import.objects.select_related("plan", "uploaded_by"), plan_id=plan_id, pk=pk
    )


@require_GET
@login_required
def import_detail(request: AuthenticatedHttpRequest, slug: str, pk: int) -> HttpResponse:
    plan, membership = get_plan_for_user(request.user, slug)
    record = _get_import(plan.pk, pk)
    context: dict[str, Any] = {"plan": plan, "membership": membership, "record": record}
    if record.status == Import.Status.DRAFT:
        try:
            preview = preview_file(record.file.path)
        except FileRejected as rejection:
            # Said, not saved: a GET changes nothing. The upload rejects such a file at once;
            # one that became unreadable since (a lower limit) is rejected when started.
            context["unreadable"] = str(rejection)
        else:
            context["preview"] = preview
            context["form"] = MappingForm(header=preview.header, mapping=preview.mapping)
    context.update(_status_context(record, membership))
    template = "insights/import_detail.html"
    if request.htmx and record.status != Import.Status.DRAFT:
        template += "#status"
    return render(request, template, context)


def _status_context(record: Import, membership: Membership) -> dict:
    context: dict = {
        "progress": read_progress(record),
        "can_undo": record.can_be_undone_by(membership),
    }
    if record.status == Import.Status.SUCCEEDED:
        types = (
            Event.objects.filter(source_import=record)
            .values("event_type")
            .annotate(count=Count("id"))
            .order_by("event_type")
        )
        mapped = set(
            EventMapping.objects.filter(plan_id=record.plan_id).values_list("event_type", flat=True)
        )
        context["new_types"] = [t for t in types if t["event_type"] not in mapped]
    return context


@require_POST
@login_required
def import_start(request: AuthenticatedHttpRequest, slug: str, pk: int) -> HttpResponse:
    plan, membership = get_plan_for_user(request.user, slug)
    require_editor(membership)
    record = _get_import(plan.pk, pk)
    if record.status != Import.Status.DRAFT or not (preview := check_draft(record)):
        return redirect("insights:import_detail", slug=plan.slug, pk=record.pk)
    form = MappingForm(request.POST, header=preview.header, mapping=preview.mapping)
    if not form.is_valid():
        context = {
            "plan": plan,
            "membership": membership,
            "record": record,
            "preview": preview,
            "form": form,
        }
        return render(request, "insights/import_detail.html", context, status=400)
    start_import(record, form.cleaned_data["mapping"], form.cleaned_data["mode"])
    return redirect("insights:import_detail", slug=plan.slug, pk=record.pk)


@require_POST
@login_required
def import_retry(request: AuthenticatedHttpRequest, slug: str, pk: int) -> HttpResponse:
    plan, membership = get_plan_for_user(request.user, slug)
    require_editor(membership)
    record = _get_import(plan.pk, pk)
    retry_import(record)
    messages.info(request, "The import starts again.")
    return redirect("insights:import_detail", slug=plan.slug, pk=record.pk)


@require_POST
@login_required
def import_valid_rows_only(request: AuthenticatedHttpRequest, slug: str, pk: int) -> HttpResponse:
    """The valid rows of an all-or-nothing import that bad rows rejected: its kept file runs
    again, in "Import the valid rows" mode; nothing to upload again."""
    plan, membership = get_plan_for_user(request.user, slug)
    require_editor(membership)
    record = _get_import(plan.pk, pk)
    if import_valid_rows(record) and not request.htmx:
        messages.info(request, "The valid rows are being imported; the rows with errors are not.")
    return _status_or_redirect(request, plan, membership, record)


@require_http_methods(["GET", "POST"])
@login_required
def import_undo(request: AuthenticatedHttpRequest, slug: str, pk: int) -> HttpResponse:
    """GET asks to confirm (the import's page, with what undoing it does); POST undoes it."""
    plan, membership = get_plan_for_user(request.user, slug)
    require_editor(membership)
    record = _get_import(plan.pk, pk)
    if not record.undoable_by(membership):
        raise PermissionDenied("Only a facilitator or the person who uploaded it can undo it.")
    if request.method == "GET":
        if record.status != Import.Status.SUCCEEDED:
            return redirect("insights:import_detail", slug=plan.slug, pk=record.pk)
        context = {
            "plan": plan,
            "membership": membership,
            "record": record,
            "confirm_undo": True,
            "later_duplicates": _later_duplicates(record),
            **_status_context(record, membership),
        }
        template = "insights/import_detail.html" + ("#status" if request.htmx else "")
        return render(request, template, context)
    try:
        undone = undo_import(record, user=request.user)
    except UndoRefused as refusal:
        if request.htmx:  # said in the fragment: a message would wait for the next page
            return _status_or_redirect(request, plan, membership, record, refused=str(refusal))
        messages.error(request, str(refusal))
    else:
        if undone is not None and not request.htmx:
            messages.success(request, f"The import is undone: {undone.sentence}")
    return _status_or_redirect(request, plan, membership, record)


def _later_duplicates(record: Import) -> list[Import]:
    """Imports after this one that skipped rows the plan held already: some may have been this
    import's, and go with it."""
    return list(
        Import.objects.filter(
            plan_id=record.plan_id,
            status=Import.Status.SUCCEEDED,
            rows_duplicate__gt=0,
            created_at__gt=record.created_at,
        ).order_by("created_at", "id")[:20]
    )


def _status_or_redirect(
    request: AuthenticatedHttpRequest,
    plan: Plan,
    membership: Membership,
    record: Import,
    refused: str = "",
) -> HttpResponse:
    """An HTMX post gets the import's status again; a plain one goes back to its page."""
    if not request.htmx:
        return redirect("insights:import_detail", slug=plan.slug, pk=record.pk)
    record = _get_import(plan.pk, record.pk)
    context = {"plan": plan, "membership": membership, "record": record, "refused": refused}
    context.update(_status_context(record, membership))
    return render(request, "insights/import_detail.html#status", context)


@require_GET
@login_required
def import_rejected(request: AuthenticatedHttpRequest, slug: str, pk: int) -> FileResponse:
    plan, _ = get_plan_for_user(request.user, slug)
    record = _get_import(plan.pk, pk)
    if not record.rejected_file:
        raise Http404("No rejected rows")
    name = f"{record.original_name.rsplit('.', 1)[0]}-rejected-rows.csv"
    return FileResponse(
        record.rejected_file.open("rb"), as_attachment=True, filename=name, content_type="text/csv"
    )


@require_GET
@login_required
def import_file(request: AuthenticatedHttpRequest, slug: str, pk: int) -> FileResponse:
    plan, _ = get_plan_for_user(request.user, slug)
    record = _get_import(plan.pk, pk)
    return FileResponse(record.file.open("rb"), as_attachment=True, filename=record.original_name)


@require_http_methods(["GET", "POST"])
@login_required
def event_map(request: AuthenticatedHttpRequest, slug: str) -> HttpResponse:
    plan, membership = get_plan_for_user(request.user, slug)
    stages = list(plan.stages.all())
    current = {
        m.event_type: m.stage
        for m in EventMapping.objects.filter(plan=plan).select_related("stage")
    }
    unreadable = ""
    try:
        with plan_engine(plan):  # the types in the plan's events, wherever they live
            seen = set(filter_options(plan).values("event_types"))
    except MetricError as error:  # a Spark cluster that does not answer: the map as it is
        seen, unreadable = set(), str(error)
    event_types = sorted(seen | set(current))
    if request.method == "POST":
        require_facilitator(membership)
        by_id = {str(stage.pk): stage for stage in stages}
        chosen: dict[str, Stage | None] = {}
        for event_type in event_types:
            stage_id = request.POST.get(f"stage_{event_type}", "")
            if stage_id in by_id:
                chosen[event_type] = by_id[stage_id]
            elif stage_id == "" and event_type in current:
                chosen[event_type] = None  # "no stage": taken off the map
        map_event_types(plan.pk, chosen)
        messages.success(request, "The event map is saved.")
        return redirect("insights:event_map", slug=plan.slug)
    rows = []
    for event_type in event_types:
        stage = current.get(event_type)
        rows.append(
            {
                "event_type": event_type,
                "stage": stage,
                "suggested": None if stage else suggest_stage(event_type, stages),
                "seen": event_type in seen,
                # In the data and on no stage: stage metrics do not count it yet.
                "unmapped": stage is None and event_type in seen,
            }
        )
    # What needs a decision comes first, highlighted, its suggested stage already chosen.
    rows.sort(key=lambda row: not row["unmapped"])
    return render(
        request,
        "insights/event_map.html",
        {
            "plan": plan,
            "membership": membership,
            "rows": rows,
            "stages": stages,
            "unmapped": [row for row in rows if row["unmapped"]],
            "unreadable": unreadable,
        },
    )
