"""The import itself: claim it, stream its file once through reading, the row rules and a sink,
and finish it, all in one transaction, so a crash or an all-or-nothing rejection leaves no event
behind."""

from __future__ import annotations

import contextlib
import io
import logging
import time
from pathlib import Path
from typing import IO, Any

from django.conf import settings
from django.core.files.base import File
from django.db import transaction
from django.utils import timezone

from planning.models import Plan

from ...metrics import latest_event_at
from ...models import Import
from .. import clv_jobs, history
from ..versions import data_changed
from .csvfiles import MAX_ERRORS_SHOWN, FileRejected, RejectedRows, open_csv, suggest_mapping
from .progress import Heartbeat, forget_progress, is_alive, stale_before
from .reading import ImportResult, parsed_batches
from .rows import Columns, check_mapping
from .sinks import sink_for

log = logging.getLogger(__name__)


class _AllOrNothing(Exception):
    """Raised inside the transaction to undo everything when one row is invalid."""


def _claim(import_id: int) -> Import | None:
    """Take the import for this worker: pending or failed ones, or a running one whose worker
    died (no heartbeat for STALE_AFTER_SECONDS). Two workers never both get it."""
    now = timezone.now()
    claimable = Import.objects.filter(
        pk=import_id, status__in=[Import.Status.PENDING, Import.Status.FAILED]
    )
    if not claimable.update(
        status=Import.Status.RUNNING, started_at=now, heartbeat_at=now, message=""
    ):
        stale = stale_before()
        if is_alive(import_id, stale):
            return None
        running = Import.objects.filter(
            pk=import_id, status=Import.Status.RUNNING, heartbeat_at__lt=stale
        )
        if not running.update(heartbeat_at=now, started_at=now):
            return None
    return Import.objects.select_related("plan").get(pk=import_id)


def _size_of(upload: IO[bytes]) -> int | None:
    """The size of an upload before it is kept, when the stream can tell it."""
    size = getattr(upload, "size", None)
    if isinstance(size, int):
        return size
    try:
        here = upload.tell()
        end = upload.seek(0, io.SEEK_END)
        upload.seek(here)
    except (AttributeError, OSError, ValueError):
        return None
    return end - here


def _too_large(size: int) -> FileRejected:
    return FileRejected(
        f"The file is {size:,} bytes; the largest accepted is {settings.IMPORT_MAX_BYTES:,} bytes."
    )


def create_import(
    plan: Plan,
    upload: IO[bytes],
    name: str,
    *,
    user: Any = None,
    mode: str = Import.Mode.ALL_OR_NOTHING,
    mapping: dict[str, str] | None = None,
    draft: bool = False,
) -> Import:
    """Keep the uploaded file with a new import record; nothing is parsed yet. A draft waits
    for its columns to be checked (`uploads.start_import`); otherwise it is ready to run."""
    size = _size_of(upload)
    if size is not None and size > settings.IMPORT_MAX_BYTES:
        raise _too_large(size)
    record = Import(
        plan=plan,
        uploaded_by=user if getattr(user, "is_authenticated", False) else None,
        original_name=Path(name).name[:255],
        mode=mode,
        mapping=mapping or {},
        status=Import.Status.DRAFT if draft else Import.Status.PENDING,
    )
    record.file.save(Path(name).name, File(upload), save=False)
    record.size_bytes = record.file.size
    if record.size_bytes > settings.IMPORT_MAX_BYTES:
        record.file.delete(save=False)
        raise _too_large(record.size_bytes)
    record.save()
    return record


def run_import(import_id: int) -> Import | None:
    """Import a kept file into its plan. Safe to run twice: only one run claims the import."""
    record = _claim(import_id)
    if record is None:
        return None
    try:
        return _import_file(record)
    except FileRejected as rejection:
        return _finish(record, Import.Status.REJECTED, ImportResult(), str(rejection))
    except Exception:
        log.exception("import %s failed", import_id)
        _finish(
            record,
            Import.Status.FAILED,
            ImportResult(),
            "The import stopped on an unexpected problem; nothing from it was saved. "
            "Retry it, and tell support if it happens again.",
        )
        raise


def _finish(record: Import, status: Import.Status, result: ImportResult, message: str) -> Import:
    record.status = status
    record.message = message
    record.rows_read = result.rows_read
    succeeded = status == Import.Status.SUCCEEDED
    record.rows_imported = result.rows_imported if succeeded else 0
    record.rows_duplicate = result.rows_duplicate if succeeded else 0
    record.rows_rejected = result.rows_rejected
    record.errors = [e.as_dict() for e in result.errors[:MAX_ERRORS_SHOWN]]
    record.finished_at = timezone.now()
    record.save()
    if succeeded and record.rows_imported:
        # In the import's transaction: the new data version commits with the events.
        data_changed(record.plan_id)
        history.request_plan_history(record.plan_id)
        clv_jobs.request_default_value(record.plan_id)  # ready when the Customers page opens
    forget_progress(record.pk)
    return record


def _import_file(record: Import) -> Import:
    with record.file.open("rb") as stream:
        csv_file = open_csv(stream)
        mapping = suggest_mapping(csv_file.header, record.mapping)
        check_mapping(csv_file.header, mapping)
        record.delimiter, record.encoding = csv_file.delimiter, csv_file.source.encoding
        record.mapping = mapping
        cols = Columns(csv_file.header, mapping)
        result = ImportResult()
        rejected = RejectedRows(csv_file.header)
        beat = Heartbeat(record, csv_file.source, result)
        sink = sink_for(record)
        all_or_nothing = record.mode == Import.Mode.ALL_OR_NOTHING
        started = time.monotonic()
        try:
            with transaction.atomic():
                with (
                    sink.open(beat) as store,
                    contextlib.closing(
                        parsed_batches(
                            csv_file,
                            cols,
                            result,
                            rejected,
                            beat,
                            sink.prepare,
                            sink.batch_rows,
                            # Once a row is rejected, an all-or-nothing import stores nothing more.
                            lambda: all_or_nothing and result.rows_rejected > 0,
                        )
                    ) as batches,
                ):
                    # The plan's as_of before this import, read once the sink holds the plan's
                    # lock (PostgreSQL): another import cannot move it between here and the end.
                    as_of_before = latest_event_at(record.plan_id)
                    # Closed on the way out, whatever happens: the parsing thread stops with it.
                    for batch in batches:
                        store(batch)
                    read = time.monotonic()
                    if result.rows_read == 0:
                        raise FileRejected("The file has a header but no rows of data.")
                    if result.rows_rejected and all_or_nothing:
                        raise _AllOrNothing
                    record.as_of_before = as_of_before
                    record.as_of_after = latest_event_at(record.plan_id)
                result.rows_imported = sink.inserted
                log.info(
                    "import %s: %s rows read and checked in %.1fs, stored in %.1fs more",
                    record.pk,
                    result.rows_read,
                    read - started,
                    time.monotonic() - read,
                )
                rejected.save_to(record)
                # In the same transaction as the events: committed together or not at all.
                return _finish(record, Import.Status.SUCCEEDED, result, "")
        except _AllOrNothing:
            rejected.save_to(record)
            message = (
                f"Nothing was imported: {result.rows_rejected:,} of {result.rows_read:,} rows "
                "have errors. Fix them and upload the file again, or import only the valid rows."
            )
            return _finish(record, Import.Status.REJECTED, result, message)
        finally:
            rejected.close()
