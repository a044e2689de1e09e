"""Storing events, the one way: an import's valid rows and the demo's events alike. PostgreSQL
takes them by `COPY` into a staging table and one `INSERT` of what the plan does not hold yet;
SQLite (the embedded default) by batched inserts.

A sink has `batch_rows`, `prepare(rows)` that turns a block of rows (`rows.STORED`, as
`Columns.parse` gives them) into what it stores, `open(beat)` that yields a `write(chunks)` for a
batch of prepared blocks, and `inserted` once closed. The transaction is the caller's.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

from django.db import IntegrityError, connection, transaction

from ...models import Event, Import
from .dates import parse_occurred_at
from .progress import Beat
from .rows import NO_ATTRIBUTES, STORED

SQLITE_BATCH = 5000
LOCK_POLL_SECONDS = 0.2
# The advisory lock (with the plan's id) that an import holds while it stores the plan's events,
# and that undoing an import takes too.
PLAN_EVENTS_LOCK = 7310

STAGED = ", ".join(STORED)


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
            cursor.execute(
                "SELECT pg_try_advisory_xact_lock(%s, %s)", [PLAN_EVENTS_LOCK, self.record.plan_id]
            )
            if cursor.fetchone()[0]:
                return
            beat()
            time.sleep(LOCK_POLL_SECONDS)


# The batch's rows that are new to the plan, each key once (its first row in the file: a repeated
# event_id keeps the first), in key order. Assembled from fixed fragments; values are parameters.
INSERT_STAGED = (
    f"INSERT INTO insights_event (plan_id, source_import_id, {STAGED}) "  # noqa: S608
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


def sink_for(record: Import) -> PostgresSink | BatchSink:
    """The sink for the database in use, storing into the import's plan as the import's."""
    return (PostgresSink if connection.vendor == "postgresql" else BatchSink)(record)
