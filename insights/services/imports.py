"""Customer-data workflows: previewing and importing event files (DOMAIN §4).

An import streams its file once: it is decoded a block at a time, parsed and checked row by
row; valid rows flow into the database (PostgreSQL: `COPY` into a staging table, then `INSERT`
of what the plan does not hold yet; SQLite: batched inserts), invalid ones into a rejected-rows
CSV. All of it, and the import's own status, happens in one transaction, so a crash or an
all-or-nothing rejection leaves no event behind.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import datetime as dt
import hashlib
import io
import itertools
import json
import logging
import queue
import re
import tempfile
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Generator, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from json.encoder import encode_basestring  # type: ignore[attr-defined]
from pathlib import Path
from typing import IO, Any

from django.conf import settings
from django.core.cache import cache, caches
from django.core.files.base import File
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from planning.models import Plan

from ..models import EVENT_FIELDS, Event, Import, identity_digest

log = logging.getLogger(__name__)

REQUIRED_FIELDS = ["customer_id", "occurred_at", "event_type"]
FIELD_LIMITS = {
    "customer_id": 200,
    "event_type": 100,
    "segment": 100,
    "channel": 100,
    "event_id": 200,
}
DELIMITERS = {",": "comma", ";": "semicolon", "\t": "tab"}
MAX_ERRORS_SHOWN = 1000
READ_BLOCK_BYTES = 1024 * 1024
WRITE_BATCH_ROWS = 5000
PROGRESS_EVERY_SECONDS = 0.5
PROGRESS_EVERY_ROWS = 5000
STALE_AFTER_SECONDS = 120
SQLITE_BATCH = 5000
LOCK_POLL_SECONDS = 0.2


class FileRejected(Exception):
    """The file as a whole cannot be imported; the message says why in plain words."""


@dataclass
class RowError:
    line: int
    column: str
    value: str
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "line": self.line,
            "column": self.column,
            "value": self.value,
            "reason": self.reason,
        }


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
    if '"' not in header_line:  # the usual header: counted in C, not a character at a time
        counts = {d: header_line.count(d) for d in DELIMITERS}
    else:
        counts = dict.fromkeys(DELIMITERS, 0)
        quoted = False
        for char in header_line:
            if char == '"':
                quoted = not quoted
            elif not quoted and char in counts:
                counts[char] += 1
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def size_in_words(size: int) -> str:
    """A limit in bytes as people say it: "1 MiB", "64 KiB", "1,000 bytes"."""
    for unit, factor in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size >= factor and not size % factor:
            return f"{size // factor:,} {unit}"
    return f"{size:,} bytes"


def _line_too_long(number: int, limit: int) -> FileRejected:
    where = "The first line" if number == 1 else f"Line {number:,}"
    return FileRejected(f"{where} is longer than {size_in_words(limit)}: is this a CSV file?")


class Source:
    """A CSV byte stream as lines of text, decoded a block at a time (the fast path); a line that
    is not UTF-8, or holds a NUL byte, is decoded with replacement characters and noted in
    `bad_lines` by its line number.

    Memory stays bounded whatever the file: a line longer than `max_line` bytes, or a row (quoted
    line breaks make one row of many lines) that runs on for more, rejects the file."""

    def __init__(self, stream: IO[bytes], max_line: int | None = None) -> None:
        self.stream = stream
        self.max_line = max_line or settings.IMPORT_MAX_LINE_BYTES
        # The line where the row being read began: `records` keeps it up to date.
        self.row_start = 1
        # (first line, offset of its first byte) of each block handed out since that row began.
        self.block_starts: deque[tuple[int, int]] = deque()
        head = stream.read(64 * 1024)
        self.encoding, self.bom = _sniff_bytes(head)
        # Lines that end in "\r" alone (Excel's "CSV (Macintosh)") are read as if they ended in "\n".
        self.classic_mac = b"\r" in head and b"\n" not in head
        stream.seek(0)
        self.bytes_read = 0
        self.lines_seen = 0
        self.bad_lines: dict[int, str] = {}
        self.lines: Iterator[str] = itertools.chain.from_iterable(self._blocks())

    def _blocks(self) -> Iterator[Iterator[str]]:
        rest = b""
        skip = len(codecs.BOM_UTF8) if self.bom else 0
        # A block never holds a whole line longer than the limit: only a line that goes on from
        # the block before can be, and that one is measured.
        size = min(READ_BLOCK_BYTES, self.max_line)
        handed_out = 0
        while chunk := self.stream.read(size):
            self.bytes_read += len(chunk)
            if self.classic_mac:
                chunk = chunk.replace(b"\r", b"\n")
            data = (rest + chunk) if rest else chunk[skip:]
            skip = 0
            first_end = data.find(b"\n")
            if (first_end if first_end >= 0 else len(data)) > self.max_line:
                raise _line_too_long(self.lines_seen + 1, self.max_line)
            cut = data.rfind(b"\n") + 1
            if not cut:  # a line longer than a block: read on
                rest = data
                continue
            rest = data[cut:]
            self._check_row(handed_out)
            self.block_starts.append((self.lines_seen + 1, handed_out))
            handed_out += cut
            yield self._decode(data[:cut])
        if rest:
            self._check_row(handed_out)
            yield self._decode(rest)

    def _check_row(self, handed_out: int) -> None:
        """Asked for the next block, the reader has read every line before it: the row it is
        in began on `row_start` and covers every block handed out after the one it began in."""
        starts = self.block_starts
        while len(starts) > 1 and starts[1][0] <= self.row_start:
            starts.popleft()
        if len(starts) > 1 and handed_out - starts[1][1] > self.max_line:
            raise FileRejected(
                f"The row that begins on line {self.row_start:,} runs on for more than "
                f'{size_in_words(self.max_line)}: is a closing quote (") missing?'
            )

    def _decode(self, block: bytes) -> Iterator[str]:
        first = self.lines_seen + 1
        self.lines_seen += block.count(b"\n") + (not block.endswith(b"\n"))
        if b"\x00" not in block:
            try:
                # Lines end at "\n" only: "\r" and U+2028 inside values stay values.
                return io.StringIO(block.decode(), newline="\n")
            except UnicodeDecodeError:
                pass
        raws = block.split(b"\n")
        last = raws.pop()
        lines = [self._decode_line(raw + b"\n", number) for number, raw in enumerate(raws, first)]
        if last:
            lines.append(self._decode_line(last, first + len(raws)))
        return iter(lines)

    def _decode_line(self, raw: bytes, number: int) -> str:
        try:
            text = raw.decode()
        except UnicodeDecodeError as error:
            byte = raw[error.start : error.start + 1]
            self.bad_lines[number] = (
                f"byte 0x{byte.hex().upper()} at position {error.start + 1} of the line is not "
                "UTF-8 (save the file as “CSV UTF-8” and upload it again)"
            )
            text = raw.decode(errors="replace")
        if "\x00" in text:
            self.bad_lines.setdefault(number, "the line holds a NUL byte, which is not text")
            text = text.replace("\x00", "\ufffd")
        return text


UNCLOSED = 'a quoted value is never closed (a " is missing)'
CSV_ERRORS = {
    "unexpected end of data": UNCLOSED,
    "field larger than field limit": UNCLOSED,
    "expected after": "a quoted value is followed by more text; quote the whole value",
    "new-line character seen in unquoted field": "a line break inside a value that is not quoted",
}


def _csv_message(error: csv.Error, first: int, last: int) -> str:
    text = str(error)
    for needle, words in CSV_ERRORS.items():
        if needle in text:
            if words == UNCLOSED and last > first:
                return f"{words}, so lines {first} to {last} were read as one value"
            return words
    return f"the line is not valid CSV ({text})"


@dataclass
class CsvFile:
    source: Source
    delimiter: str
    header: list[str]
    reader: Any  # a csv reader over the lines after the header


def check_width(columns: int) -> None:
    """Refuse a file with more columns than IMPORT_MAX_COLUMNS, saying both numbers."""
    if columns > settings.IMPORT_MAX_COLUMNS:
        raise FileRejected(
            f"This file has {columns:,} columns; at most {settings.IMPORT_MAX_COLUMNS:,} are "
            "supported."
        )


def open_csv(stream: IO[bytes]) -> CsvFile:
    """Open a CSV byte stream: its encoding, delimiter and header; FileRejected if it has none,
    or if it is wider or its lines longer than the limits."""
    source = Source(stream)
    # No value can be longer than the line or row it is in; process-wide, as the csv module is.
    csv.field_size_limit(source.max_line)
    first = next(source.lines, "")
    if not first.strip():
        raise FileRejected("The file has no header line: the first line is empty.")
    if 1 in source.bad_lines:
        raise FileRejected(f"The header line is not readable: {source.bad_lines[1]}.")
    delimiter = _detect_delimiter(first)
    try:
        header = next(csv.reader([first], delimiter=delimiter, strict=True))
    except csv.Error as error:
        raise FileRejected(
            f"The header line is not valid CSV: {_csv_message(error, 1, 1)}."
        ) from None
    check_width(len(header))
    header = [name.strip() for name in header]
    if not any(header):
        raise FileRejected("The header line has no column names.")
    reader = csv.reader(source.lines, delimiter=delimiter, strict=True)
    return CsvFile(source, delimiter, header, reader)


def records(csv_file: CsvFile) -> Iterator[tuple[int, list[str] | None, str]]:
    """(line number where the row starts, its values or None, what is wrong with its bytes or its
    CSV) for every row; blank lines are skipped."""
    reader = csv_file.reader
    source = csv_file.source
    bad_lines = source.bad_lines
    line = source.row_start = 2
    while True:
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            last = reader.line_num + 1
            yield line, None, _csv_message(error, line, last)
            line = source.row_start = last + 1
            continue
        last = reader.line_num + 1
        if values and values != [""]:
            problem = ""
            if bad_lines:
                problem = next((bad_lines[n] for n in range(line, last + 1) if n in bad_lines), "")
            yield line, values, problem
        line = source.row_start = last + 1


def suggest_mapping(header: list[str], overrides: dict[str, str] | None = None) -> dict[str, str]:
    """source column → event field, matched by name case-insensitively; overrides win (their
    source names are matched case-insensitively too)."""
    mapping: dict[str, str] = {}
    for name in header:
        key = name.strip().lower().replace(" ", "_")
        if key in EVENT_FIELDS and key not in mapping.values():
            mapping[name] = key
    by_lower = {name.lower(): name for name in header}
    for source, target in (overrides or {}).items():
        source = source if source in header else by_lower.get(source.strip().lower(), source)
        target = target.strip().lower()
        mapping = {s: t for s, t in mapping.items() if t != target and s != source}
        mapping[source] = target
    return mapping


def preview_file(
    path: Path | str, overrides: dict[str, str] | None = None, rows: int = 10
) -> Preview:
    """The header and first rows, for the user to check the columns. Runs in a web request, so
    it reads only the file's first IMPORT_PREVIEW_MAX_BYTES (a whole line at least)."""
    limit = max(settings.IMPORT_PREVIEW_MAX_BYTES, settings.IMPORT_MAX_LINE_BYTES + 1)
    with open(path, "rb") as stream:
        head = stream.read(limit)
        cut_short = bool(stream.read(1))
    if cut_short:  # whole lines only; a head with no line end is refused as too long a line
        end = head.rfind(b"\n") + 1 or head.rfind(b"\r") + 1
        head = head[:end] if end else head
    csv_file = open_csv(io.BytesIO(head))
    sample = [
        # A row wider than the header shows what fits under it (the import says what is wrong).
        values[: len(csv_file.header)]
        for _, values, _ in itertools.islice(records(csv_file), rows)
        if values is not None
    ]
    header = csv_file.header
    return Preview(
        csv_file.source.encoding,
        csv_file.delimiter,
        header,
        sample,
        suggest_mapping(header, overrides),
    )


# ---------------------------------------------------------------------------------------------
# Checking rows


def check_mapping(header: list[str], mapping: dict[str, str]) -> None:
    """Raise FileRejected unless every required field has exactly one column."""
    counts = Counter(h.lower() for h in header if h)
    duplicates = sorted({h for h in header if h and counts[h.lower()] > 1})
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
    """ISO 8601 date (00:00 UTC that day) or date-time (no zone means UTC)."""
    moment = dt.datetime.fromisoformat(text.strip())
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    if not 1 < moment.year < 9999:  # its UTC time must stay within what Python can read back
        raise ValueError("out of range")
    return moment


VALUE_MAX_INTEGER_DIGITS = 14
VALUE_MAX_DECIMALS = 6
VALUE_QUANTUM = Decimal(1).scaleb(-VALUE_MAX_DECIMALS)


def parse_value(text: str) -> Decimal:
    value = Decimal(text.strip())
    if not value.is_finite():
        raise InvalidOperation
    # Size first: quantizing a huge number would overflow the context and read as "not a number".
    if value.adjusted() >= VALUE_MAX_INTEGER_DIGITS:
        raise ValueError("is too large")
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)
    if -exponent > VALUE_MAX_DECIMALS and value != value.quantize(VALUE_QUANTUM):
        raise ValueError(f"has more than {VALUE_MAX_DECIMALS} decimal places")
    return value


# Text that PostgreSQL reads as the same instant and number as Python does is passed on as it is
# (it takes zone offsets up to ±15:59 only); anything else is written out again, in UTC.
PLAIN_MOMENT = re.compile(
    r"\d{4}-\d\d-\d\d(?:[T ]\d\d:\d\d(?::\d\d(?:\.\d{1,6})?)?(?:Z|[+-](?:0\d|1[0-5]):\d\d)?)?",
    re.ASCII,
).fullmatch
PLAIN_NUMBER = re.compile(r"[+-]?\d{1,14}(?:\.\d{1,6})?", re.ASCII).fullmatch
DATE_REASON = "is not a date; use ISO 8601 such as 2026-03-01 or 2026-03-01T14:05:00+01:00"
NUMBER_REASON = "is not a number; use digits and a dot for decimals, such as 1234.50"
NO_ATTRIBUTES = "{}"


class Columns:
    """Where each event field sits in a row, which columns are kept as attributes, and how a row
    becomes an event (`parse`, the fast path) or a list of errors (`errors`)."""

    def __init__(self, header: list[str], mapping: dict[str, str]) -> None:
        self.header = header
        self.width = len(header)
        self.mapping = mapping
        self.field_index = {t: header.index(s) for s, t in mapping.items()}
        self.field_source = {t: s for s, t in mapping.items()}
        self.attributes = [(i, h) for i, h in enumerate(header) if h not in mapping and h]
        self.unnamed = [i for i, h in enumerate(header) if not h]
        index = self.field_index.get
        # check_mapping has made sure the required fields have a column.
        self.i_customer, self.i_at, self.i_type = (self.field_index[f] for f in REQUIRED_FIELDS)
        self.i_value, self.i_segment, self.i_channel, self.i_event_id = (
            index(f) for f in ("value", "segment", "channel", "event_id")
        )
        # The identity's content as json.dumps(sort_keys=True, ensure_ascii=False) writes it,
        # assembled from pre-encoded keys (Event.identity is the reference; a test pins them).
        keys = [(t, i, True) for t, i in self.field_index.items()]
        keys += [(f"attr:{h}", i, False) for i, h in self.attributes]
        self.content_keys = [(encode_basestring(k) + ": ", i, s) for k, i, s in sorted(keys)]
        self.attribute_keys = [(encode_basestring(h) + ": ", i) for i, h in self.attributes]
        self.seen: dict[bytes, int] = {}
        self.max_customer_id, self.max_event_type, self.max_segment, self.max_channel = (
            FIELD_LIMITS[f] for f in ("customer_id", "event_type", "segment", "channel")
        )
        self.max_event_id = FIELD_LIMITS["event_id"]

    def parse(self, values: list[str]) -> tuple[str, ...] | None:
        """The row ready for storage, all text (an empty value or event_id means none), with its
        dedupe key; None if anything is wrong with it (then `errors` says what)."""
        if len(values) != self.width:
            return None
        customer_id = values[self.i_customer].strip()
        event_type = values[self.i_type].strip()
        if (
            not customer_id
            or not event_type
            or len(customer_id) > self.max_customer_id
            or len(event_type) > self.max_event_type
        ):
            return None
        occurred_at = values[self.i_at].strip()
        try:
            moment = parse_occurred_at(occurred_at)
        except ValueError:
            return None
        if not PLAIN_MOMENT(occurred_at):
            occurred_at = moment.astimezone(dt.UTC).isoformat()
        value = values[self.i_value].strip() if self.i_value is not None else ""
        if value and not PLAIN_NUMBER(value):
            try:
                value = str(parse_value(value))
            except (InvalidOperation, ValueError):
                return None
        segment = values[self.i_segment].strip() if self.i_segment is not None else ""
        channel = values[self.i_channel].strip() if self.i_channel is not None else ""
        event_id = values[self.i_event_id].strip() if self.i_event_id is not None else ""
        if (
            len(segment) > self.max_segment
            or len(channel) > self.max_channel
            or len(event_id) > self.max_event_id
        ):
            return None
        extra = self._unnamed(values) if self.unnamed else None
        if extra:
            attributes = json.dumps(
                {**{h: values[i] for i, h in self.attributes}, **extra}, ensure_ascii=False
            )
        elif self.attribute_keys:
            attributes = (
                "{"
                + ", ".join([k + encode_basestring(values[i]) for k, i in self.attribute_keys])
                + "}"
            )
        else:
            attributes = NO_ATTRIBUTES
        return (
            customer_id,
            occurred_at,
            event_type.lower(),
            value,
            segment,
            channel,
            event_id,
            attributes,
            self.key(values, event_id, extra),
        )

    def _unnamed(self, values: list[str]) -> dict[str, str]:
        """Values under a column with no name (a trailing delimiter on every line), if any."""
        return {f"column {i + 1}": values[i] for i in self.unnamed if values[i]}

    def key(self, values: list[str], event_id: str, extra: dict[str, str] | None) -> str:
        """The dedupe key, exactly Event.identity's: by event_id, else by content and how many
        identical rows came before it in this file."""
        if event_id:
            return identity_digest(("id\x1f" + event_id).encode()).hex()
        if extra:
            content = {t: values[i].strip() for t, i in self.field_index.items()}
            content.update({f"attr:{h}": values[i] for i, h in self.attributes})
            content.update({f"attr:{h}": v for h, v in extra.items()})
            text = json.dumps(content, sort_keys=True, ensure_ascii=False)
        else:
            text = (
                "{"
                + ", ".join(
                    [
                        k + encode_basestring(values[i].strip() if s else values[i])
                        for k, i, s in self.content_keys
                    ]
                )
                + "}"
            )
        data = text.encode()
        # 8 bytes of the content's own hash count the occurrences: small enough for millions.
        digest = hashlib.blake2b(data, digest_size=8).digest()
        occurrence = self.seen.get(digest, 0)
        self.seen[digest] = occurrence + 1
        return identity_digest(b"row\x1f" + data + f"\x1f{occurrence}".encode()).hex()

    def errors(self, values: list[str], line: int) -> list[RowError]:
        """Everything wrong with a row, in a stable order: empty, too long, not a date, not a
        number."""
        if len(values) != self.width:
            reason = (
                f"{len(values)} value{'s' if len(values) != 1 else ''} where the header has "
                f"{self.width} columns"
            )
            return [RowError(line, "", "", reason)]
        raw = {name: values[index].strip() for name, index in self.field_index.items()}
        errors: list[RowError] = []

        def fail(name: str, reason: str) -> None:
            errors.append(
                RowError(line, self.field_source.get(name, name), raw.get(name, ""), reason)
            )

        for name in REQUIRED_FIELDS:
            if not raw.get(name):
                fail(name, "is empty")
        for name, limit in FIELD_LIMITS.items():
            if len(raw.get(name, "")) > limit:
                fail(name, f"is longer than {limit} characters")
        if raw.get("occurred_at"):
            try:
                parse_occurred_at(raw["occurred_at"])
            except ValueError:
                fail("occurred_at", DATE_REASON)
        if raw.get("value"):
            try:
                parse_value(raw["value"])
            except InvalidOperation:
                fail("value", NUMBER_REASON)
            except ValueError as error:
                fail("value", str(error))
        return errors

    def byte_error(self, values: list[str], line: int, problem: str) -> RowError:
        """A row with bytes that are not text: name the column they are in when it can be told."""
        for index, value in enumerate(values):
            if "\ufffd" in value:
                name = self.header[index] if index < self.width else ""
                return RowError(line, name or f"column {index + 1}", value, problem)
        return RowError(line, "", "", problem)


def _row_errors(line: int, values: list[str] | None, problem: str, cols: Columns) -> list[RowError]:
    if values is None:
        return [RowError(line, "", "", problem)]
    errors = cols.errors(values, line)
    if problem:
        errors.insert(0, cols.byte_error(values, line, problem))
    return errors or [RowError(line, "", "", "the row cannot be read as an event")]


# ---------------------------------------------------------------------------------------------
# Writing rows


# Where a reader may start a cell: the cell's own start, or after a delimiter some reader may
# split on (comma, semicolon, tab, pipe) or a line break, whatever quoting we wrote. A formula
# character there, after any spaces or quotes a reader may drop, gets a ' before it.
# (The spaces skipped exclude the delimiters, and are never given back: linear time on any cell.)
FORMULA_START = re.compile(r"(^|[,;\t|\r\n])((?:[^\S\t\r\n]|\")*+)(?=[=+\-@])")


def neutralise(cell: str) -> str:
    """A cell no spreadsheet runs as a formula, however it splits the line: a ' goes before every
    =, +, - or @ that could begin a cell, and before a leading tab or carriage return."""
    cell = FORMULA_START.sub(r"\1\2'", cell)
    return "'" + cell if cell[:1] in ("\t", "\r") else cell


class CsvWriter:
    """The one way the app writes CSV: every cell quoted and neutralised (OWASP's CSV injection
    advice), so that a cell read with any delimiter is text."""

    def __init__(self, text: IO[str]) -> None:
        self.writer = csv.writer(text, quoting=csv.QUOTE_ALL)

    def writerow(self, row: Iterable[object]) -> None:
        self.writer.writerow([neutralise(str(cell)) for cell in row])

    def writerows(self, rows: Iterable[Iterable[object]]) -> None:
        for row in rows:
            self.writerow(row)


class RejectedRows:
    """The rejected rows with their line and reasons, spooled to a temporary file (a file of
    millions of bad rows does not live in memory), then kept next to the upload."""

    def __init__(self, header: list[str]) -> None:
        self.raw = tempfile.TemporaryFile()
        self.text = io.TextIOWrapper(self.raw, encoding="utf-8", newline="")
        self.writer = CsvWriter(self.text)
        self.writer.writerow(["line", "errors", *header])
        self.count = 0

    def add(self, line: int, values: list[str] | None, errors: list[RowError]) -> None:
        reasons = "; ".join(f"{e.column}: {e.reason}" if e.column else e.reason for e in errors)
        self.writer.writerow([line, reasons, *(values or [])])
        self.count += 1

    def save_to(self, record: Import) -> None:
        if not self.count:
            return
        self.text.flush()
        self.raw.seek(0)
        name = f"{Path(record.file.name or 'import').stem}-rejected.csv"
        record.rejected_file.save(name, File(self.raw), save=False)

    def close(self) -> None:
        self.text.close()


Beat = Callable[..., None]
STAGED = "customer_id, occurred_at, event_type, value, segment, channel, event_id, attributes, dedupe_key"


def _copy_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


class PostgresSink:
    """Each batch of valid rows goes into a temporary staging table by COPY, then into the
    events by one INSERT of what the plan does not hold yet, in key order (the unique index is
    then filled page after page: a third faster than in file order). The plan's lock makes two
    imports take turns, so the INSERT needs no ON CONFLICT check on every row; a writer that
    takes no lock (the admin, a script) can still get in between, and then ON CONFLICT does."""

    # Large enough to sort well, small enough that parsing the next batch overlaps storing this
    # one, and that the waiting batches stay small (COPY text: ~70 bytes a row).
    batch_rows = 100_000
    # The rows of the batch that the plan holds already: dropped before they are inserted.
    ALREADY_STORED = (
        "AND NOT EXISTS (SELECT 1 FROM insights_event e "
        "WHERE e.plan_id = %(plan)s AND e.dedupe_key = s.dedupe_key)"
    )

    def __init__(self, record: Import) -> None:
        self.record = record
        self.inserted = 0

    @staticmethod
    def prepare(rows: list[tuple[str, ...]]) -> str:
        """COPY's text format with '' as NULL: rows are joined as they are, and escaped only in
        the rare batch that holds a backslash, tab or line break inside a value."""
        text = "\n".join(["\t".join(row) for row in rows]) + "\n"
        count = len(rows)
        if (
            "\\" in text
            or "\r" in text
            or text.count("\n") != count
            or text.count("\t") != (len(rows[0]) - 1) * count
        ):
            text = "".join("\t".join([_copy_escape(value) for value in row]) + "\n" for row in rows)
        return text

    @contextmanager
    def open(self, beat: Beat) -> Iterator[Callable[[list[str]], None]]:
        with connection.cursor() as cursor:
            # Text without a zone is UTC (DOMAIN §4), whatever the connection's time zone.
            cursor.execute("SET LOCAL TIME ZONE 'UTC'")
            # A batch is sorted by key in memory, not on disk.
            cursor.execute("SET LOCAL work_mem = '64MB'")
            # An earlier import in the same outer transaction may have left its table behind.
            cursor.execute("DROP TABLE IF EXISTS event_staging")
            cursor.execute(
                "CREATE TEMPORARY TABLE event_staging (customer_id text, occurred_at timestamptz, "
                "event_type text, value numeric(20, 6), segment text, channel text, event_id text, "
                "attributes jsonb, dedupe_key uuid) ON COMMIT DROP"
            )
            self._lock(cursor, beat)
            plain = True
            # Nothing is stored yet (a first import): no row of the file can be, and the check
            # is left to the unique index (a file that repeats an event_id falls back below).
            cursor.execute(
                "SELECT EXISTS (SELECT 1 FROM insights_event WHERE plan_id = %s)",
                [self.record.plan_id],
            )
            already_stored = self.ALREADY_STORED if cursor.fetchone()[0] else ""

            def write(chunks: list[str]) -> None:
                nonlocal plain
                cursor.execute("TRUNCATE event_staging")
                with cursor.cursor.copy(
                    f"COPY event_staging ({STAGED}) FROM STDIN (NULL '')"
                ) as copy:
                    for chunk in chunks:
                        copy.write(chunk)
                params = {"plan": self.record.plan_id, "import": self.record.pk}
                if plain:
                    try:
                        with transaction.atomic():
                            cursor.execute(self._insert(already_stored, ""), params)
                    except IntegrityError:
                        # Someone stored some of these events meanwhile without taking the lock.
                        plain = False
                if not plain:
                    conflict = "ON CONFLICT (plan_id, dedupe_key) DO NOTHING"
                    cursor.execute(self._insert(already_stored, conflict), params)
                self.inserted += cursor.rowcount

            yield write
            cursor.execute("DROP TABLE event_staging")

    def _insert(self, already_stored: str, conflict: str) -> str:
        return INSERT_STAGED.format(already_stored=already_stored, conflict=conflict)

    def _lock(self, cursor: Any, beat: Beat) -> None:
        """Two imports into one plan take turns storing; the waiting one keeps beating."""
        while True:
            cursor.execute("SELECT pg_try_advisory_xact_lock(%s, %s)", [7310, self.record.plan_id])
            if cursor.fetchone()[0]:
                return
            beat()
            time.sleep(LOCK_POLL_SECONDS)


# The batch's rows that are new to the plan, each key once (its first row in the file: a repeated
# event_id keeps the first), in key order.
INSERT_STAGED = (
    f"INSERT INTO insights_event (plan_id, source_import_id, {STAGED}) "
    "SELECT DISTINCT ON (s.dedupe_key) %(plan)s, %(import)s, s.customer_id, s.occurred_at, "
    "s.event_type, s.value, coalesce(s.segment, ''), coalesce(s.channel, ''), s.event_id, "
    "s.attributes, s.dedupe_key FROM event_staging s WHERE true {already_stored} "
    "ORDER BY s.dedupe_key, s.ctid {conflict}"
)


class BatchSink:
    """Batched inserts, for SQLite (the embedded default)."""

    batch_rows = SQLITE_BATCH

    def __init__(self, record: Import) -> None:
        self.record = record
        self.inserted = 0

    def prepare(self, rows: list[tuple[str, ...]]) -> list[Event]:
        plan_id, import_id = self.record.plan_id, self.record.pk
        return [
            Event(
                plan_id=plan_id,
                source_import_id=import_id,
                customer_id=customer_id,
                occurred_at=parse_occurred_at(occurred_at),
                event_type=event_type,
                value=Decimal(value) if value else None,
                segment=segment,
                channel=channel,
                event_id=event_id or None,
                attributes={} if attributes == NO_ATTRIBUTES else json.loads(attributes),
                dedupe_key=uuid.UUID(key),
            )
            for customer_id, occurred_at, event_type, value, segment, channel, event_id, attributes, key in rows
        ]

    @contextmanager
    def open(self, beat: Beat) -> Iterator[Callable[[list[list[Event]]], None]]:
        def write(chunks: list[list[Event]]) -> None:
            events = [event for chunk in chunks for event in chunk]
            Event.objects.bulk_create(events, batch_size=SQLITE_BATCH, ignore_conflicts=True)

        yield write
        self.inserted = Event.objects.filter(source_import_id=self.record.pk).count()


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
                    # Closed on the way out, whatever happens: the parsing thread stops with it.
                    for batch in batches:
                        store(batch)
                    read = time.monotonic()
                    if result.rows_read == 0:
                        raise FileRejected("The file has a header but no rows of data.")
                    if result.rows_rejected and all_or_nothing:
                        raise _AllOrNothing
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
