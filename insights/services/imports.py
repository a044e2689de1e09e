"""Customer-data workflows: previewing and importing event files (DOMAIN §4).

An import streams its file once: it is decoded a block at a time, parsed and checked row by
row; valid rows flow into the database (PostgreSQL: `COPY` into a staging table, then `INSERT`
of what the plan does not hold yet; SQLite: batched inserts), invalid ones into a rejected-rows
CSV. All of it, and the import's own status, happens in one transaction, so a crash or an
all-or-nothing rejection leaves no event behind.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import logging
import queue
import threading
import time
from collections.abc import Callable, Generator
from pathlib import Path
from typing import IO, Any

from django.conf import settings
from django.core.cache import cache, caches
from django.core.files.base import File
from django.db import connection, transaction
from django.utils import timezone

from planning.models import Plan

from ..metrics import latest_event_at
from ..models import Import
from . import clv_jobs, history

# Reading files lives in csvfiles, checking their rows in rows, storing them in sinks; callers
# import the names of the first two from here too.
from .csvfiles import (  # noqa: F401
    CSV_ERRORS,
    DELIMITERS,
    FIELD_LIMITS,
    FORMULA_START,
    MAX_ERRORS_SHOWN,
    READ_BLOCK_BYTES,
    REQUIRED_FIELDS,
    UNCLOSED,
    Beat,
    CsvFile,
    CsvWriter,
    FileRejected,
    ImportResult,
    Preview,
    RejectedRows,
    RowError,
    Source,
    _csv_message,
    _detect_delimiter,
    _line_too_long,
    _sniff_bytes,
    check_width,
    neutralise,
    open_csv,
    preview_file,
    records,
    size_in_words,
    suggest_mapping,
)
from .rows import (  # noqa: F401
    DATE_REASON,
    NO_ATTRIBUTES,
    NUMBER_REASON,
    PLAIN_MOMENT,
    PLAIN_NUMBER,
    VALUE_MAX_DECIMALS,
    VALUE_MAX_INTEGER_DIGITS,
    VALUE_QUANTUM,
    Columns,
    _row_errors,
    check_mapping,
    parse_occurred_at,
    parse_value,
)
from .sinks import BatchSink, PostgresSink

log = logging.getLogger(__name__)

WRITE_BATCH_ROWS = 5000
PROGRESS_EVERY_SECONDS = 0.5
PROGRESS_EVERY_ROWS = 5000
STALE_AFTER_SECONDS = 120


class _AllOrNothing(Exception):
    """Raised inside the transaction to undo everything when one row is invalid."""


# ---------------------------------------------------------------------------------------------
# Progress and claiming


def progress_key(import_id: int) -> str:
    return f"import-progress:{import_id}"


def cached_progress(import_id: int) -> dict[str, Any]:
    """What the worker last said of its progress; nothing when the cache cannot be read (Redis
    down): the import's page then shows what the database knows, never an error."""
    try:
        return cache.get(progress_key(import_id)) or {}
    except Exception as error:
        log.warning("import %s: progress unreadable: %s", import_id, error)
        return {}


def read_progress(record: Import) -> dict[str, Any]:
    """Rows read, rows per second and time left, for the progress bar."""
    data = cached_progress(record.pk)
    rows = data.get("rows", record.rows_read)
    done = data.get("bytes", 0)
    total = record.size_bytes or 1
    elapsed = max(data.get("at", 0) - data.get("started", 0), 0.001)
    rate = rows / elapsed if data else 0
    if record.status in {Import.Status.SUCCEEDED, Import.Status.REJECTED}:
        fraction = 1.0
    else:  # all read is not all stored: a running import never shows a full bar
        fraction = min(done / total, 0.99)
    left = (elapsed / fraction - elapsed) if 0 < fraction < 1 else 0
    return {"rows": rows, "rate": rate, "fraction": fraction, "seconds_left": left}


class Heartbeat:
    """Progress, and the sign of life that tells a live import from one whose worker died. In
    the cache, not the database: the import's own transaction hides its writes until the end."""

    def __init__(self, record: Import, source: Source, result: ImportResult) -> None:
        self.key = progress_key(record.pk)
        # This thread's cache connection, shared with the parsing thread that beats too.
        self.cache = caches["default"]
        self.source = source
        self.result = result
        self.started = time.time()
        self.last = 0.0

    def __call__(self) -> None:
        now = time.time()
        if now - self.last < PROGRESS_EVERY_SECONDS:
            return
        self.last = now
        progress = {
            "rows": self.result.rows_read,
            "bytes": self.source.bytes_read,
            "started": self.started,
            "at": now,
        }
        self.cache.set(self.key, progress, timeout=3600)


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
        stale = now - dt.timedelta(seconds=STALE_AFTER_SECONDS)
        heartbeat = cached_progress(import_id).get("at", 0)
        if heartbeat and heartbeat > stale.timestamp():
            return None
        running = Import.objects.filter(
            pk=import_id, status=Import.Status.RUNNING, heartbeat_at__lt=stale
        )
        if not running.update(heartbeat_at=now, started_at=now):
            return None
    return Import.objects.select_related("plan").get(pk=import_id)


def mark_stalled_imports() -> int:
    """Imports whose worker died mid-way become failed and retryable, never stuck “running”."""
    stale = timezone.now() - dt.timedelta(seconds=STALE_AFTER_SECONDS)
    stalled = 0
    for record in Import.objects.filter(status=Import.Status.RUNNING, heartbeat_at__lt=stale):
        heartbeat = cached_progress(record.pk).get("at", 0)
        if heartbeat > stale.timestamp():
            continue
        stalled += Import.objects.filter(pk=record.pk, status=Import.Status.RUNNING).update(
            status=Import.Status.FAILED,
            finished_at=timezone.now(),
            message="The import was interrupted before it finished. Nothing from it was saved; "
            "retry it to import the file again.",
        )
    return stalled


# ---------------------------------------------------------------------------------------------
# The import


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
        history.data_changed(record.plan_id)
        history.request_plan_history(record.plan_id)
        clv_jobs.request_default_value(record.plan_id)  # ready when the Customers page opens
    with contextlib.suppress(Exception):  # it expires by itself
        cache.delete(progress_key(record.pk))
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
        sink = (PostgresSink if connection.vendor == "postgresql" else BatchSink)(record)
        all_or_nothing = record.mode == Import.Mode.ALL_OR_NOTHING
        started = time.monotonic()
        try:
            with transaction.atomic():
                with (
                    sink.open(beat) as store,
                    contextlib.closing(
                        _parsed_batches(
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


class _Stopped(Exception):
    """The storing side gave up: the parsing thread stops too."""


def _parsed_batches(
    csv_file: CsvFile,
    cols: Columns,
    result: ImportResult,
    rejected: RejectedRows,
    beat: Beat,
    prepare: Callable[[list[tuple]], Any],
    batch_rows: int,
    skip: Callable[[], bool],
) -> Generator[list[Any]]:
    """The file's valid rows, `batch_rows` at a time, each batch a list of prepared chunks.

    A thread of its own parses them while the caller stores the batch before (Python checks
    rows on one core while the database indexes them on the other); at most two batches wait.
    The thread touches no database: rejected rows go to a temporary file, beats to the cache.
    An error on either side stops both, and a parsing error is raised here."""
    batches: queue.Queue[Any] = queue.Queue(maxsize=2)
    stop = threading.Event()
    finished = object()

    def put(item: Any) -> None:
        while not stop.is_set():
            try:
                batches.put(item, timeout=0.1)
                return
            except queue.Full:
                beat()  # the storing side is busy: still alive
        raise _Stopped

    def produce() -> None:
        chunks: list[Any] = []
        rows = 0

        def emit(valid: list[tuple]) -> None:
            nonlocal chunks, rows
            if skip():
                chunks, rows = [], 0
                return
            chunks.append(prepare(valid))
            rows += len(valid)
            if rows >= batch_rows:
                put(chunks)
                chunks, rows = [], 0

        try:
            _read_rows(csv_file, cols, result, rejected, emit, beat)
            if chunks and not skip():
                put(chunks)
            put(finished)
        except _Stopped:
            pass
        except BaseException as error:  # handed to the caller, raised there
            with contextlib.suppress(_Stopped):
                put(error)

    thread = threading.Thread(target=produce, name="import-parser", daemon=True)
    thread.start()
    try:
        while (item := batches.get()) is not finished:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()


def _read_rows(
    csv_file: CsvFile,
    cols: Columns,
    result: ImportResult,
    rejected: RejectedRows,
    emit: Callable[[list[tuple]], None],
    beat: Beat,
) -> None:
    """The hot loop: every row is parsed once; valid ones go out WRITE_BATCH_ROWS at a time."""
    batch: list[tuple] = []
    parse = cols.parse
    for line, values, problem in records(csv_file):
        result.rows_read += 1
        row = parse(values) if values is not None and not problem else None
        if row is not None:
            batch.append(row)
            if len(batch) >= WRITE_BATCH_ROWS:
                result.rows_valid += len(batch)
                emit(batch)
                batch = []
        else:
            errors = _row_errors(line, values, problem, cols)
            result.rows_rejected += 1
            if len(result.errors) < MAX_ERRORS_SHOWN:
                result.errors.extend(errors[: MAX_ERRORS_SHOWN - len(result.errors)])
            rejected.add(line, values, errors)
        if not result.rows_read % PROGRESS_EVERY_ROWS:
            beat()
    if batch:
        result.rows_valid += len(batch)
        emit(batch)
    beat()
