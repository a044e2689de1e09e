"""Customer-data workflows: previewing and importing event files (DOMAIN §4).

An import streams its file once: every line is decoded, parsed and checked, valid rows flow
into the database (PostgreSQL: `COPY` into a staging table, then one `INSERT … ON CONFLICT DO
NOTHING`; SQLite: batched inserts), invalid ones into a rejected-rows CSV. All of it happens in
one transaction, so a crash or an all-or-nothing rejection leaves no event behind.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import hashlib
import io
import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import IO, Any

from django.conf import settings
from django.core.cache import cache
from django.core.files.base import File
from django.db import connection, transaction
from django.utils import timezone

from planning.models import Plan

from .models import Event, Import

log = logging.getLogger(__name__)

EVENT_FIELDS = ["customer_id", "occurred_at", "event_type", "value", "segment", "channel", "event_id"]
REQUIRED_FIELDS = ["customer_id", "occurred_at", "event_type"]
FIELD_LIMITS = {"customer_id": 200, "event_type": 100, "segment": 100, "channel": 100, "event_id": 200}
DELIMITERS = {",": "comma", ";": "semicolon", "\t": "tab"}
MAX_ERRORS_SHOWN = 1000
MAX_FIELD_BYTES = 1024 * 1024
PROGRESS_EVERY_SECONDS = 0.5
STALE_AFTER_SECONDS = 120
SQLITE_BATCH = 5000

csv.field_size_limit(MAX_FIELD_BYTES)


class FileRejected(Exception):
    """The file as a whole cannot be imported; the message says why in plain words."""


@dataclass
class RowError:
    line: int
    column: str
    value: str
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"line": self.line, "column": self.column, "value": self.value, "reason": self.reason}


@dataclass
class Preview:
    encoding: str
    delimiter: str
    header: list[str]
    rows: list[list[str]]
    mapping: dict[str, str]

    @property
    def delimiter_name(self) -> str:
        return DELIMITERS[self.delimiter]


@dataclass
class ImportResult:
    rows_read: int = 0
    rows_valid: int = 0
    rows_imported: int = 0
    rows_rejected: int = 0
    errors: list[RowError] = field(default_factory=list)

    @property
    def rows_duplicate(self) -> int:
        return self.rows_valid - self.rows_imported


# ---------------------------------------------------------------------------------------------
# Reading the file


def _sniff_bytes(head: bytes) -> tuple[str, bool]:
    """The encoding of a file from its first bytes: UTF-8 (with or without BOM), nothing else."""
    if not head:
        raise FileRejected("The file is empty.")
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise FileRejected(
            "The file is UTF-16 text; save it as “CSV UTF-8” (comma delimited) and upload it again."
        )
    if b"\x00" in head:
        raise FileRejected(
            "This is not a CSV text file: it contains binary data (was another kind of file "
            "renamed to .csv?)."
        )
    bom = head.startswith(codecs.BOM_UTF8)
    return ("utf-8-sig" if bom else "utf-8"), bom


def _detect_delimiter(header_line: str) -> str:
    counts = {d: 0 for d in DELIMITERS}
    quoted = False
    for char in header_line:
        if char == '"':
            quoted = not quoted
        elif not quoted and char in counts:
            counts[char] += 1
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def _decode_lines(stream: IO[bytes], bad_lines: dict[int, str], progress: list[int]) -> Iterator[str]:
    """Yield the file's lines as text; a line that is not UTF-8 is noted in `bad_lines`."""
    for number, raw in enumerate(stream, start=1):
        progress[0] += len(raw)
        if number == 1 and raw.startswith(codecs.BOM_UTF8):
            raw = raw[len(codecs.BOM_UTF8) :]
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError as error:
            byte = raw[error.start : error.start + 1]
            bad_lines[number] = (
                f"byte 0x{byte.hex().upper()} at position {error.start + 1} is not UTF-8 "
                "(save the file as “CSV UTF-8” and upload it again)"
            )
            yield raw.decode("utf-8", errors="replace")


CSV_ERRORS = {
    "unexpected end of data": "a quoted value is never closed (a \" is missing)",
    "field larger than field limit": "a quoted value is never closed (a \" is missing)",
    "expected after": 'a quoted value is followed by more text; quote the whole value',
    "new-line character seen in unquoted field": "a line break inside a value that is not quoted",
}


def _csv_message(error: csv.Error) -> str:
    text = str(error)
    for needle, words in CSV_ERRORS.items():
        if needle in text:
            return words
    return f"the line is not valid CSV ({text})"


@dataclass
class Record:
    line: int
    values: list[str] | None
    problem: str = ""


def read_records(stream: IO[bytes], progress: list[int]) -> tuple[str, list[str], Iterator[Record]]:
    """Open a CSV byte stream: (delimiter, header, records with their first line number)."""
    head = stream.read(64 * 1024)
    _sniff_bytes(head)
    stream.seek(0)
    bad_lines: dict[int, str] = {}
    lines = _decode_lines(stream, bad_lines, progress)
    first = next(lines, "")
    if not first.strip():
        raise FileRejected("The file has no header line: the first line is empty.")
    if 1 in bad_lines:
        raise FileRejected(f"The header line is not readable: {bad_lines[1]}.")
    delimiter = _detect_delimiter(first)
    try:
        header = next(csv.reader([first], delimiter=delimiter, strict=True))
    except csv.Error as error:
        raise FileRejected(f"The header line is not valid CSV: {_csv_message(error)}.") from None
    header = [name.strip() for name in header]
    if not any(header):
        raise FileRejected("The header line has no column names.")

    def records() -> Iterator[Record]:
        reader = csv.reader(lines, delimiter=delimiter, strict=True)
        last_line = 1
        while True:
            start = last_line + 1
            try:
                values = next(reader)
            except StopIteration:
                return
            except csv.Error as error:
                last_line = reader.line_num + 1
                yield Record(start, None, _csv_message(error))
                continue
            last_line = reader.line_num + 1
            problem = next(
                (bad_lines[n] for n in range(start, last_line + 1) if n in bad_lines), ""
            )
            if not values or values == [""]:
                continue  # blank line
            yield Record(start, values, problem)

    return delimiter, header, records()


def suggest_mapping(header: list[str], overrides: dict[str, str] | None = None) -> dict[str, str]:
    """source column → event field, matched by name case-insensitively; overrides win."""
    mapping: dict[str, str] = {}
    for name in header:
        key = name.strip().lower().replace(" ", "_")
        if key in EVENT_FIELDS and key not in mapping.values():
            mapping[name] = key
    for source, target in (overrides or {}).items():
        mapping = {s: t for s, t in mapping.items() if t != target}
        mapping[source] = target
    return mapping


def preview_file(path: Path | str, overrides: dict[str, str] | None = None, rows: int = 10) -> Preview:
    with open(path, "rb") as stream:
        head = stream.read(64 * 1024)
        encoding, _ = _sniff_bytes(head)
        stream.seek(0)
        delimiter, header, records = read_records(stream, [0])
        sample = [r.values for r in _take(records, rows) if r.values is not None]
    return Preview(encoding, delimiter, header, sample, suggest_mapping(header, overrides))


def _take(iterator: Iterator[Record], count: int) -> list[Record]:
    taken = []
    for record in iterator:
        taken.append(record)
        if len(taken) >= count:
            break
    return taken


# ---------------------------------------------------------------------------------------------
# Checking rows


def check_mapping(header: list[str], mapping: dict[str, str]) -> None:
    """Raise FileRejected unless every required field has exactly one column."""
    lowered = [h.lower() for h in header]
    duplicates = sorted({h for h in header if lowered.count(h.lower()) > 1})
    if duplicates:
        raise FileRejected(f"The header names the column {', '.join(duplicates)} more than once.")
    for source, target in mapping.items():
        if source not in header:
            raise FileRejected(
                f"There is no column “{source}” to map onto {target} "
                f"(the columns are: {', '.join(header)})."
            )
        if target not in EVENT_FIELDS:
            raise FileRejected(
                f"“{target}” is not an event field; map columns onto {', '.join(EVENT_FIELDS)}."
            )
    missing = [f for f in REQUIRED_FIELDS if f not in mapping.values()]
    if missing:
        raise FileRejected(
            f"The file has no {' and no '.join(missing)} column (the columns are: "
            f"{', '.join(header)}). Rename a column or map one onto it."
        )


def parse_occurred_at(text: str) -> dt.datetime:
    text = text.strip()
    if len(text) == 10:
        day = dt.date.fromisoformat(text)
        return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
    moment = dt.datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment


VALUE_MAX_INTEGER_DIGITS = 14
VALUE_MAX_DECIMALS = 6


def parse_value(text: str) -> Decimal:
    value = Decimal(text.strip())
    if not value.is_finite():
        raise InvalidOperation
    sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)
    if -exponent > VALUE_MAX_DECIMALS and value != value.quantize(Decimal(1).scaleb(-VALUE_MAX_DECIMALS)):
        raise ValueError(f"has more than {VALUE_MAX_DECIMALS} decimal places")
    if value.adjusted() >= VALUE_MAX_INTEGER_DIGITS:
        raise ValueError("is too large")
    return value


@dataclass
class Columns:
    """Where each event field sits in a row, and which columns are kept as attributes."""

    header: list[str]
    mapping: dict[str, str]

    def __post_init__(self) -> None:
        self.field_index = {t: self.header.index(s) for s, t in self.mapping.items()}
        self.field_source = {t: s for s, t in self.mapping.items()}
        self.attributes = [(i, h) for i, h in enumerate(self.header) if h not in self.mapping and h]


def parse_row(values: list[str], line: int, cols: Columns) -> tuple[tuple | None, dict, list[RowError]]:
    """(event columns for storage, identity content, errors) for one CSV row."""
    errors: list[RowError] = []
    if len(values) != len(cols.header):
        reason = (
            f"{len(values)} value{'s' if len(values) != 1 else ''} where the header has "
            f"{len(cols.header)} columns"
        )
        return None, {}, [RowError(line, "", "", reason)]
    raw = {name: values[index].strip() for name, index in cols.field_index.items()}
    content = dict(raw)
    attributes = {name: values[index] for index, name in cols.attributes}
    content.update({f"attr:{k}": v for k, v in attributes.items()})

    def fail(name: str, reason: str) -> None:
        errors.append(RowError(line, cols.field_source.get(name, name), raw.get(name, ""), reason))

    for name in REQUIRED_FIELDS:
        if not raw.get(name):
            fail(name, "is empty")
    for name, limit in FIELD_LIMITS.items():
        if len(raw.get(name, "")) > limit:
            fail(name, f"is longer than {limit} characters")
    occurred_at = None
    if raw.get("occurred_at"):
        try:
            occurred_at = parse_occurred_at(raw["occurred_at"])
        except ValueError:
            fail(
                "occurred_at",
                "is not a date; use ISO 8601 such as 2026-03-01 or 2026-03-01T14:05:00+01:00",
            )
    value = None
    if raw.get("value"):
        try:
            value = parse_value(raw["value"])
        except InvalidOperation:
            fail("value", "is not a number; use digits and a dot for decimals, such as 1234.50")
        except ValueError as error:
            fail("value", str(error))
    if errors:
        return None, content, errors
    row = (
        raw["customer_id"],
        occurred_at,
        raw["event_type"].lower(),
        value,
        raw.get("segment", ""),
        raw.get("channel", ""),
        raw.get("event_id") or None,
        attributes,
    )
    return row, content, []


class Identities:
    """Dedupe keys for a file's rows: by event_id, or by content and occurrence (DOMAIN §4)."""

    def __init__(self) -> None:
        self.seen: dict[bytes, int] = {}

    def key(self, event_id: str | None, content: dict) -> str:
        if event_id:
            return Event.identity(event_id, content, 0)
        digest = hashlib.blake2b(
            json.dumps(content, sort_keys=True, ensure_ascii=False).encode(), digest_size=16
        ).digest()
        occurrence = self.seen.get(digest, 0)
        self.seen[digest] = occurrence + 1
        return Event.identity(None, content, occurrence)


# ---------------------------------------------------------------------------------------------
# Writing rows


def neutralise(cell: str) -> str:
    """A cell a spreadsheet would run as a formula is written back with a leading quote."""
    if cell and cell[0] in "=+-@\t\r":
        return "'" + cell
    return cell


class RejectedRows:
    """The rejected rows, streamed to a CSV next to the upload, with their line and reasons."""

    def __init__(self, header: list[str]) -> None:
        self.buffer = io.StringIO()
        self.writer = csv.writer(self.buffer)
        self.writer.writerow(["line", "errors", *header])
        self.count = 0

    def add(self, line: int, values: list[str] | None, errors: list[RowError]) -> None:
        reasons = "; ".join(f"{e.column}: {e.reason}" if e.column else e.reason for e in errors)
        self.writer.writerow([line, neutralise(reasons), *(neutralise(v) for v in values or [])])
        self.count += 1

    def save_to(self, record: Import) -> None:
        if not self.count:
            return
        name = f"{Path(record.file.name).stem}-rejected.csv"
        record.rejected_file.save(name, File(io.BytesIO(self.buffer.getvalue().encode())), save=False)


class PostgresSink:
    """COPY into a temporary staging table, then one INSERT … ON CONFLICT DO NOTHING."""

    COLUMNS = "customer_id, occurred_at, event_type, value, segment, channel, event_id, attributes, dedupe_key"

    def __init__(self, record: Import) -> None:
        self.record = record
        self.inserted = 0

    @contextmanager
    def open(self) -> Iterator[Any]:
        with connection.cursor() as cursor:
            cursor.execute(
                "CREATE TEMPORARY TABLE event_staging (customer_id text, occurred_at timestamptz, "
                "event_type text, value numeric(20, 6), segment text, channel text, event_id text, "
                "attributes jsonb, dedupe_key text) ON COMMIT DROP"
            )
            with cursor.cursor.copy(f"COPY event_staging ({self.COLUMNS}) FROM STDIN") as copy:
                yield lambda row, key: copy.write_row((*row[:7], json.dumps(row[7]), key))
            # Two imports into one plan take turns here; the unique key keeps events single.
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [7310, self.record.plan_id])
            cursor.execute(
                f"INSERT INTO insights_event (plan_id, source_import_id, {self.COLUMNS}) "
                f"SELECT %s, %s, {self.COLUMNS} FROM event_staging "
                "ON CONFLICT (plan_id, dedupe_key) DO NOTHING",
                [self.record.plan_id, self.record.pk],
            )
            self.inserted = cursor.rowcount


class BatchSink:
    """Batched inserts, for SQLite (the embedded default)."""

    def __init__(self, record: Import) -> None:
        self.record = record
        self.batch: list[Event] = []
        self.inserted = 0

    def _flush(self) -> None:
        Event.objects.bulk_create(self.batch, ignore_conflicts=True)
        self.batch = []

    @contextmanager
    def open(self) -> Iterator[Any]:
        def add(row: tuple, key: str) -> None:
            customer_id, occurred_at, event_type, value, segment, channel, event_id, attrs = row
            self.batch.append(
                Event(
                    plan_id=self.record.plan_id,
                    source_import_id=self.record.pk,
                    customer_id=customer_id,
                    occurred_at=occurred_at,
                    event_type=event_type,
                    value=value,
                    segment=segment,
                    channel=channel,
                    event_id=event_id,
                    attributes=attrs,
                    dedupe_key=key,
                )
            )
            if len(self.batch) >= SQLITE_BATCH:
                self._flush()

        yield add
        self._flush()
        self.inserted = Event.objects.filter(source_import_id=self.record.pk).count()


class _AllOrNothing(Exception):
    """Raised inside the transaction to undo everything when one row is invalid."""


# ---------------------------------------------------------------------------------------------
# Progress and claiming


def progress_key(import_id: int) -> str:
    return f"import-progress:{import_id}"


def read_progress(record: Import) -> dict[str, Any]:
    """Rows read, rows per second and time left, for the progress bar."""
    data = cache.get(progress_key(record.pk)) or {}
    rows = data.get("rows", record.rows_read)
    done = data.get("bytes", 0)
    total = record.size_bytes or 1
    elapsed = max(data.get("at", 0) - data.get("started", 0), 0.001)
    rate = rows / elapsed if data else 0
    fraction = 1.0 if record.status in {"succeeded", "rejected"} else min(done / total, 1.0)
    left = (elapsed / fraction - elapsed) if 0 < fraction < 1 else 0
    return {"rows": rows, "rate": rate, "fraction": fraction, "seconds_left": left}


def _claim(import_id: int) -> Import | None:
    """Take the import for this worker: pending or failed ones, or a running one whose worker
    died (no heartbeat for STALE_AFTER_SECONDS). Two workers never both get it."""
    now = timezone.now()
    claimable = Import.objects.filter(pk=import_id, status__in=["pending", "failed"])
    if not claimable.update(status="running", started_at=now, heartbeat_at=now, message=""):
        stale = now - dt.timedelta(seconds=STALE_AFTER_SECONDS)
        heartbeat = (cache.get(progress_key(import_id)) or {}).get("at", 0)
        if heartbeat and heartbeat > stale.timestamp():
            return None
        running = Import.objects.filter(pk=import_id, status="running", heartbeat_at__lt=stale)
        if not running.update(heartbeat_at=now, started_at=now):
            return None
    return Import.objects.select_related("plan").get(pk=import_id)


def mark_stalled_imports() -> int:
    """Imports whose worker died mid-way become failed and retryable, never stuck “running”."""
    stale = timezone.now() - dt.timedelta(seconds=STALE_AFTER_SECONDS)
    stalled = 0
    for record in Import.objects.filter(status="running", heartbeat_at__lt=stale):
        heartbeat = (cache.get(progress_key(record.pk)) or {}).get("at", 0)
        if heartbeat > stale.timestamp():
            continue
        stalled += Import.objects.filter(pk=record.pk, status="running").update(
            status="failed",
            finished_at=timezone.now(),
            message="The import was interrupted before it finished. Nothing from it was saved; "
            "retry it to import the file again.",
        )
    return stalled


# ---------------------------------------------------------------------------------------------
# The import


def create_import(
    plan: Plan,
    upload: IO[bytes],
    name: str,
    *,
    user: Any = None,
    mode: str = Import.Mode.ALL_OR_NOTHING,
    mapping: dict[str, str] | None = None,
) -> Import:
    """Keep the uploaded file with a new import record; nothing is parsed yet."""
    record = Import(
        plan=plan,
        uploaded_by=user if getattr(user, "is_authenticated", False) else None,
        original_name=Path(name).name[:255],
        mode=mode,
        mapping=mapping or {},
    )
    record.file.save(Path(name).name, File(upload), save=False)
    record.size_bytes = record.file.size
    if record.size_bytes > settings.IMPORT_MAX_BYTES:
        record.file.delete(save=False)
        raise FileRejected(
            f"The file is {record.size_bytes:,} bytes; the largest accepted is "
            f"{settings.IMPORT_MAX_BYTES:,} bytes."
        )
    record.save()
    return record


def run_import(import_id: int) -> Import | None:
    """Import a kept file into its plan. Safe to run twice: only one run claims the import."""
    record = _claim(import_id)
    if record is None:
        return None
    started = time.monotonic()
    try:
        result = _import_file(record)
    except FileRejected as rejection:
        return _finish(record, "rejected", ImportResult(), str(rejection))
    except Exception:
        log.exception("import %s failed", import_id)
        _finish(
            record,
            "failed",
            ImportResult(),
            "The import stopped on an unexpected problem; nothing from it was saved. "
            "Retry it, and tell support if it happens again.",
        )
        raise
    log.info("import %s: %s rows in %.1fs", import_id, result.rows_read, time.monotonic() - started)
    if result.rows_rejected and record.mode == Import.Mode.ALL_OR_NOTHING:
        message = (
            f"Nothing was imported: {result.rows_rejected:,} of {result.rows_read:,} rows have "
            "errors. Fix them and upload the file again, or import only the valid rows."
        )
        return _finish(record, "rejected", result, message)
    return _finish(record, "succeeded", result, "")


def _finish(record: Import, status: str, result: ImportResult, message: str) -> Import:
    record.status = status
    record.message = message
    record.rows_read = result.rows_read
    record.rows_imported = result.rows_imported if status == "succeeded" else 0
    record.rows_duplicate = result.rows_duplicate if status == "succeeded" else 0
    record.rows_rejected = result.rows_rejected
    record.errors = [e.as_dict() for e in result.errors[:MAX_ERRORS_SHOWN]]
    record.finished_at = timezone.now()
    record.save()
    cache.delete(progress_key(record.pk))
    return record


def _import_file(record: Import) -> ImportResult:
    result = ImportResult()
    sink_class = PostgresSink if connection.vendor == "postgresql" else BatchSink
    progress = [0]
    with record.file.open("rb") as stream:
        delimiter, header, records = read_records(stream, progress)
        mapping = suggest_mapping(header, record.mapping)
        check_mapping(header, mapping)
        record.delimiter, record.encoding = delimiter, "utf-8"
        record.mapping = mapping
        cols = Columns(header, mapping)
        rejected = RejectedRows(header)
        identities = Identities()
        sink = sink_class(record)
        clock = {"started": time.time(), "last": 0.0}
        try:
            with transaction.atomic(), sink.open() as add:
                for item in records:
                    result.rows_read += 1
                    row, content, errors = _check(item, cols)
                    if errors:
                        result.rows_rejected += 1
                        if len(result.errors) < MAX_ERRORS_SHOWN:
                            result.errors.extend(errors[: MAX_ERRORS_SHOWN - len(result.errors)])
                        rejected.add(item.line, item.values, errors)
                    else:
                        add(row, identities.key(row[6], content))
                        result.rows_valid += 1
                    _beat(record, result, progress, clock)
                if result.rows_read == 0:
                    raise FileRejected("The file has a header but no rows of data.")
                if result.rows_rejected and record.mode == Import.Mode.ALL_OR_NOTHING:
                    raise _AllOrNothing
            result.rows_imported = sink.inserted
        except _AllOrNothing:
            result.rows_imported = 0
        rejected.save_to(record)
    return result


def _check(item: Record, cols: Columns) -> tuple[Any, dict, list[RowError]]:
    if item.values is None:
        return None, {}, [RowError(item.line, "", "", item.problem)]
    row, content, errors = parse_row(item.values, item.line, cols)
    if item.problem:
        errors.insert(0, RowError(item.line, "", "", item.problem))
    return row, content, errors


def _beat(record: Import, result: ImportResult, progress: list[int], clock: dict) -> None:
    now = time.time()
    if now - clock["last"] < PROGRESS_EVERY_SECONDS:
        return
    clock["last"] = now
    # The cache, not the database: the import's own transaction hides its writes until the end.
    cache.set(
        progress_key(record.pk),
        {"rows": result.rows_read, "bytes": progress[0], "started": clock["started"], "at": now},
        timeout=3600,
    )
