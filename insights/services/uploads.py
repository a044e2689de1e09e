"""What people do with an events file (DOMAIN §4): upload it, start it once its columns are
checked, retry it when it failed. Each step changes the import's status with a conditional
UPDATE, so two clicks (or a click and the back-office) change it once, and hands the import to
a worker when the transaction commits.

Apart from `imports`, the importer itself: the worker's task runs that module, and these steps
send the task, so sharing one module would make an import cycle with `insights.tasks`."""

from __future__ import annotations

from typing import IO, Any

from django.db import transaction

from planning.jobs import enqueue
from planning.models import Plan

from .. import tasks
from ..models import Import
from .imports import FileRejected, Preview, create_import, preview_file


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
