"""Reading an events file for the import: every row parsed once, in a thread of its own, valid
rows handed on in batches ready for a sink, rejected ones told and spooled with their reasons."""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

from . import progress
from .csvfiles import MAX_ERRORS_SHOWN, CsvFile, RejectedRows, RowError, records
from .progress import Beat
from .rows import Columns

WRITE_BATCH_ROWS = 5000


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


class _Stopped(Exception):
    """The storing side gave up: the parsing thread stops too."""


def parsed_batches(
    csv_file: CsvFile,
    cols: Columns,
    result: ImportResult,
    rejected: RejectedRows,
    beat: Beat,
    prepare: Callable[[list[tuple]], Any],
    batch_rows: int,
    skip: Callable[[], bool],
) -> Generator[list[Any]]:
    """The file's valid rows, `batch_rows` at a time, each batch a list of chunks made by
    `prepare` (a sink's); none once `skip()` says so.

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
            read_rows(csv_file, cols, result, rejected, emit, beat)
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


def read_rows(
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
    every = progress.PROGRESS_EVERY_ROWS
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
            errors = cols.row_errors(line, values, problem)
            result.rows_rejected += 1
            if len(result.errors) < MAX_ERRORS_SHOWN:
                result.errors.extend(errors[: MAX_ERRORS_SHOWN - len(result.errors)])
            rejected.add(line, values, errors)
        if not result.rows_read % every:
            beat()
    if batch:
        result.rows_valid += len(batch)
        emit(batch)
    beat()
