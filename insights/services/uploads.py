"""What people do with an events file (DOMAIN §4): upload it, start it once its columns are
checked, retry it when it failed, import its valid rows when bad ones rejected it, undo it. Each
step changes the import's status with a conditional UPDATE, so two clicks (or a click and the
back-office) change it once, and hands the import to a worker when the transaction commits.

Apart from `imports`, the importer itself: the worker's task runs that module, and these steps
send the task, so sharing one module would make an import cycle with `insights.tasks`."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import partial
from typing import IO, Any

from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from planning.jobs import enqueue
from planning.models import Activity, Plan
from planning.services import record_activity

from .. import tasks
from ..metrics import latest_event_at
from ..models import Event, Import
from . import clv_jobs, history
from .imports import FileRejected, Preview, create_import, preview_file
from .imports.sinks import PLAN_EVENTS_LOCK
from .versions import data_changed


def upload_import(plan: Plan, upload: IO[bytes], name: str, *, user: Any = None) -> Import:
    """Keep an uploaded file as a draft, for its uploader to check the columns. A file that
    cannot be imported at all (not CSV, too wide…) is rejected at once, and kept. Raises
    FileRejected when the file is too large to keep."""
    record = create_import(plan, upload, name, user=user, draft=True)
    check_draft(record)
    return record


def check_draft(record: Import) -> Preview | None:
    """A draft's header and first rows; None, and the draft rejected with the reason, when its
    file cannot be imported. It writes, so only POSTs call it: a page that shows a draft calls
    `preview_file` itself and saves nothing."""
    try:
        return preview_file(record.file.path)
    except FileRejected as rejection:
        reject_draft(record, str(rejection))
        return None


def reject_draft(record: Import, message: str) -> bool:
    """A draft whose file cannot be imported: rejected, with the reason; the file is kept."""
    rejected = Import.objects.filter(pk=record.pk, status=Import.Status.DRAFT).update(
        status=Import.Status.REJECTED, message=message
    )
    if rejected:
        record.status, record.message = Import.Status.REJECTED, message
    return bool(rejected)


def start_import(record: Import, mapping: dict[str, str], mode: str) -> bool:
    """Start a draft with the columns its uploader chose. False when it was no longer a draft
    (a second click, another tab): nothing is started twice."""
    with transaction.atomic():
        started = Import.objects.filter(pk=record.pk, status=Import.Status.DRAFT).update(
            status=Import.Status.PENDING, mapping=mapping, mode=mode
        )
        if started:
            enqueue(tasks.import_events, record.pk)
    return bool(started)


def retry_import(record: Import) -> bool:
    """Run a failed import again (from its page or the back-office). False when it had not
    failed, or a worker took it meanwhile."""
    with transaction.atomic():
        retried = Import.objects.filter(pk=record.pk, status=Import.Status.FAILED).update(
            status=Import.Status.PENDING, message=""
        )
        if retried:
            enqueue(tasks.import_events, record.pk)
    return bool(retried)


def import_valid_rows(record: Import) -> bool:
    """Run an all-or-nothing import that bad rows rejected again, on the file it kept, importing
    its valid rows this time (the mode chosen at upload becomes "Import the valid rows"): nothing
    to upload again. False when it was not such an import, or it was started meanwhile."""
    with transaction.atomic():
        started = Import.objects.filter(
            pk=record.pk,
            status=Import.Status.REJECTED,
            mode=Import.Mode.ALL_OR_NOTHING,
            rows_rejected__gt=0,
            rows_read__gt=F("rows_rejected"),
        ).update(
            status=Import.Status.PENDING,
            mode=Import.Mode.SKIP_INVALID,
            message="",
            errors=[],
            rows_read=0,
            rows_rejected=0,
            rejected_file="",
        )
        if started:
            # The run writes the rejected rows again; the old copy goes once this commits.
            if name := record.rejected_file.name:
                transaction.on_commit(partial(record.rejected_file.storage.delete, name))
            enqueue(tasks.import_events, record.pk)
    if started:
        record.refresh_from_db()
    return bool(started)


class UndoRefused(Exception):
    """The import cannot be undone now; the message says why in plain words."""


@dataclass
class Undone:
    events: int
    as_of_before: dt.datetime | None
    as_of_after: dt.datetime | None

    @property
    def sentence(self) -> str:
        n = self.events
        said = f"its {n:,} event{'s were' if n != 1 else ' was'} deleted."
        if self.as_of_before != self.as_of_after:
            if self.as_of_after is None:
                said += " The plan has no customer data now."
            else:
                said += (
                    f" The plan's latest data is now {_day(self.as_of_after)} "
                    f"(it was {_day(self.as_of_before)}): every windowed metric ends there."
                )
        return said


def undo_import(record: Import, *, user: Any = None) -> Undone | None:
    """Delete the events a succeeded import stored, in one statement, and keep the import as
    undone, for the record. What was computed from the data follows as after an import: a new
    data version, the histories and the default lifetime-value report; the plan's activity says
    who undid it. None when it was not a succeeded import (undone already: a second click).

    Raises UndoRefused while another import stores events into the plan (PostgreSQL): deleting
    rows it has just found stored would leave it counting them as duplicates of nothing."""
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_try_advisory_xact_lock(%s, %s)", [PLAN_EVENTS_LOCK, record.plan_id]
                )
                if not cursor.fetchone()[0]:
                    raise UndoRefused(
                        "Another import is storing events into this plan right now; undo this "
                        "one once it has finished."
                    )
        now = timezone.now()
        actor = user if getattr(user, "is_authenticated", False) else None
        if not Import.objects.filter(pk=record.pk, status=Import.Status.SUCCEEDED).update(
            status=Import.Status.UNDONE, undone_at=now, undone_by=actor
        ):
            return None
        as_of_before = latest_event_at(record.plan_id)
        # One DELETE (no signal or relation asks Django to collect the rows first); the event
        # triggers check inserts and updates only, so nothing runs per row.
        events, _ = Event.objects.filter(source_import_id=record.pk).delete()
        as_of_after = latest_event_at(record.plan_id)
        if events:
            data_changed(record.plan_id)
            history.request_plan_history(record.plan_id)
            clv_jobs.request_default_value(record.plan_id)
        plan = Plan.objects.get(pk=record.plan_id)
        record_activity(
            plan,
            actor,
            Activity.Action.REVERTED,
            "import",
            item_id=record.pk,
            item_label=record.original_name,
            before={"status": "Imported", "events": events, "latest event": _day(as_of_before)},
            after={"status": "Undone", "events": 0, "latest event": _day(as_of_after)},
        )
    record.status, record.undone_at, record.undone_by = Import.Status.UNDONE, now, actor
    return Undone(events, as_of_before, as_of_after)


def _day(moment: dt.datetime | None) -> str:
    if moment is None:
        return ""
    day = moment.astimezone(dt.UTC)
    return f"{day.day} {day:%b %Y}"
