"""Customer-data files as CSV: reading them (the encoding, the delimiter, bounded lines, rows and
columns, each row with its line number; the preview) and writing CSV that no spreadsheet runs as a
formula. No database work here: `reading` turns the rows into checked batches, `sinks` stores
them."""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import logging
import re
import tempfile
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from django.conf import settings
from django.core.files.base import File

from ...models import EVENT_FIELDS, Import

log = logging.getLogger(__name__)

DELIMITERS = {",": "comma", ";": "semicolon", "\t": "tab"}
MAX_ERRORS_SHOWN = 1000
READ_BLOCK_BYTES = 1024 * 1024


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
