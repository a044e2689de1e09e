"""The metric SQL's helpers: the dialect helpers (the only places where PostgreSQL and SQLite
differ in the metric SQL), and `position`, which sets each row beside the moments of a series."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

from django.db import connection

EVENTS = "insights_event"
# Longer than the calendar (years 1–9999): any span beyond it reaches past every event.
MAX_DAYS = 3_660_000
# Before every event: the lower bound of "everything up to as_of".
FLOOR = dt.datetime(1, 1, 2, tzinfo=dt.UTC)


def days_before(when: dt.datetime, days: int) -> dt.datetime:
    """`when` − `days` × 24 h; a span longer than the calendar reaches back to its start."""
    try:
        return max(when - dt.timedelta(days=days), FLOOR)
    except OverflowError:
        return FLOOR


def moment(value: dt.datetime) -> Any:
    """A moment as a statement parameter, comparable with the stored column.

    SQLite keeps datetimes as UTC text 'YYYY-MM-DD HH:MM:SS[.ffffff]' and compares text: the
    parameter must be written the same way (an aware datetime would be sent with its offset).
    """
    return connection.ops.adapt_datetimefield_value(value)


def unindexed(column: str) -> str:
    """`column`, in a condition that SQLite must not answer from an index.

    Given a time bound over every event type (or as_of, which keeps nearly every event),
    SQLite's planner reads the range through the (plan, type, time) index, one type after
    another, and fetches each row from the table in the index's order: about ten times the
    cost of reading the table through (its statistics cannot tell that the range holds nearly
    every event). A unary plus keeps it off the index; PostgreSQL's planner knows its data,
    and `+` is not an operator on its timestamps."""
    if connection.vendor == "postgresql":
        return column
    return f"+{column}"


def day(column: str) -> str:
    """The UTC calendar day of a timestamp column."""
    if connection.vendor == "postgresql":
        return f"(({column}) AT TIME ZONE 'UTC')::date"
    # The stored text's date part, exact (SQLite's date functions go through a floating-point
    # day number).
    return f"substr({column}, 1, 10)"


def plus_days(column: str, days: int) -> str:
    """`column` + `days` × 24 h, to the microsecond."""
    days = min(int(days), MAX_DAYS)
    if connection.vendor == "postgresql":
        # In hours, not days: a day of interval follows the session's time zone.
        return f"({column} + interval '{days * 24} hours')"
    # SQLite text 'YYYY-MM-DD HH:MM:SS[.ffffff]' in UTC: move the date part and keep the time of
    # day as stored (strftime's %f would cut it to milliseconds, date() may round it up a day).
    return f"(date(substr({column}, 1, 10), '+{days} days') || substr({column}, 11))"


def exact_sum(column: str) -> str:
    """SQL for the sum of a decimal column, exact on both databases (see `to_fraction`).

    PostgreSQL sums its numeric exactly. SQLite stores decimals as floating point; summing
    whole parts and millionths apart keeps the stored six decimals exact.
    """
    if connection.vendor == "postgresql":
        return f"SUM({column})"
    whole = f"CAST({column} AS INTEGER)"
    return f"SUM({whole}) || ':' || SUM(CAST(ROUND(({column} - {whole}) * 1000000) AS INTEGER))"


def to_fraction(total: Any) -> Fraction | None:
    if total is None:
        return None
    if isinstance(total, str):  # SQLite: "whole:millionths"
        whole, millionths = total.split(":")
        return int(whole) + Fraction(int(millionths), 1_000_000)
    return Fraction(total)


def position(
    column: str,
    bounds: Sequence[dt.datetime],
    *,
    inclusive: bool = False,
    low: int = 0,
    high: int | None = None,
) -> tuple[str, list[Any]]:
    """SQL for how many of `bounds` (ascending moments) come before the value of `column`:
    `bound < value`, or with `inclusive` `bound <= value`; and its parameters.

    This is how a series puts each row beside the moments it counts for, without a join (a
    join with a table of moments compares every event with every moment, and SQLite may even
    run it moments-first, reading the events once per moment): a binary search, in C on
    PostgreSQL (`width_bucket` over an array of the bounds), written as nested CASEs on SQLite
    (about log2(len(bounds)) comparisons a row). PostgreSQL's planner costs a CASE by all its
    branches: nested CASEs made a series look expensive enough to be compiled (JIT), which
    took longer than running it. When the statement already bounds the answer to [low, high]
    and they meet (one moment), the answer is a constant. The value must not be NULL.
    """
    high = len(bounds) if high is None else high
    if low >= high:
        return str(low), []
    if connection.vendor == "postgresql":
        # width_bucket counts the bounds <= the value; `bound < value` is `bound + 1 µs <=
        # value` (timestamps are whole microseconds).
        shift = dt.timedelta(0) if inclusive else dt.timedelta(microseconds=1)
        return (
            f"width_bucket({column}, %s::timestamptz[])",
            [[moment(bound + shift) for bound in bounds]],
        )
    compare = "<" if inclusive else "<="

    def search(lo: int, hi: int) -> tuple[str, list[Any]]:
        if lo >= hi:
            return str(lo), []
        middle = (lo + hi) // 2
        # More than `middle` bounds come before the value iff bounds[middle] does.
        below, below_params = search(lo, middle)
        above, above_params = search(middle + 1, hi)
        return (
            f"CASE WHEN {column} {compare} %s THEN {below} ELSE {above} END",
            [moment(bounds[middle]), *below_params, *above_params],
        )

    return search(low, high)


def larger(a: str, b: str) -> str:
    """The larger of two columns, or `b` where `a` is NULL (PostgreSQL's GREATEST skips NULLs,
    SQLite's MAX(a, b) returns NULL). Column names only: each is written twice."""
    return f"(CASE WHEN {a} > {b} THEN {a} ELSE {b} END)"


def fetchone(sql: str, params: list[Any]) -> tuple:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()


def fetchall(sql: str, params: list[Any]) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()
