"""The metric SQL's helpers: the dialect helpers (the only places where PostgreSQL, SQLite and
Spark SQL differ in the metric SQL), and `position`, which sets each row beside the moments of a
series.

The dialect is Django's database unless `using` sets another for a block: Spark SQL on a
customer's cluster (`insights.metrics.spark.on_source`), where `insights_event` is a temporary
view over the customer's table with DOMAIN §4's columns, so the same statements run there."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from django.db import connection

EVENTS = "insights_event"
# Longer than the calendar (years 1–9999): any span beyond it reaches past every event.
MAX_DAYS = 3_660_000
# Before every event: the lower bound of "everything up to as_of".
FLOOR = dt.datetime(1, 1, 2, tzinfo=dt.UTC)


@dataclass(frozen=True)
class Dialect:
    """Where the metric SQL runs: "postgresql", "sqlite" or "spark". For Spark, `run` executes a
    statement (`?` placeholders) with its parameters and returns its rows."""

    name: str
    run: Callable[[str, list[Any]], list[tuple]] | None = None


_dialect: ContextVar[Dialect | None] = ContextVar("metric_dialect", default=None)


@contextlib.contextmanager
def using(dialect: Dialect) -> Iterator[None]:
    """Run the metric SQL of this block in `dialect` instead of on Django's database."""
    token = _dialect.set(dialect)
    try:
        yield
    finally:
        _dialect.reset(token)


def dialect() -> str:
    current = _dialect.get()
    return current.name if current else connection.vendor


def indexed() -> bool:
    """Whether the events have the (plan, type, time) index (a skip scan finds the latest event
    in a few probes); a Spark table has none, and one pass over it is what it does best."""
    return dialect() != "spark"


def exact_squares() -> bool:
    """Whether the database sums squares of the stored decimals exactly (PostgreSQL's numeric).
    SQLite keeps floating point; Spark's decimal products past 38 digits are rounded."""
    return dialect() == "postgresql"


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
    Spark takes an aware datetime as the instant it is (its session runs in UTC).
    """
    if dialect() == "spark":
        return value.astimezone(dt.UTC)
    return connection.ops.adapt_datetimefield_value(value)


def unindexed(column: str) -> str:
    """`column`, in a condition that SQLite must not answer from an index.

    Given a time bound over every event type (or as_of, which keeps nearly every event),
    SQLite's planner reads the range through the (plan, type, time) index, one type after
    another, and fetches each row from the table in the index's order: about ten times the
    cost of reading the table through (its statistics cannot tell that the range holds nearly
    every event). A unary plus keeps it off the index; PostgreSQL's planner knows its data,
    and `+` is not an operator on its timestamps (nor on Spark's, which has no index)."""
    if dialect() in ("postgresql", "spark"):
        return column
    return f"+{column}"


def day(column: str) -> str:
    """The UTC calendar day of a timestamp column."""
    if dialect() == "postgresql":
        return f"(({column}) AT TIME ZONE 'UTC')::date"
    if dialect() == "spark":  # the session's time zone is UTC (`spark.open_source`)
        return f"CAST({column} AS DATE)"
    # The stored text's date part, exact (SQLite's date functions go through a floating-point
    # day number).
    return f"substr({column}, 1, 10)"


# SQLite's julianday('0001-01-01'): a date's day number counted from week 0's first day.
JULIAN_WEEK_ZERO = 1721425.5


def period_number(column: str, *, weekly: bool) -> str:
    """The number of the UTC calendar month (months since January of year 0) or ISO week (weeks
    since Monday 0001-01-01, the proleptic Gregorian calendar's first day) of a timestamp column."""
    if dialect() == "postgresql":
        utc = f"(({column}) AT TIME ZONE 'UTC')"
        if weekly:
            return f"(({utc}::date - DATE '0001-01-01') / 7)"
        return f"(date_part('year', {utc})::int * 12 + date_part('month', {utc})::int - 1)"
    if dialect() == "spark":  # the session's time zone is UTC; its calendar is proleptic Gregorian
        if weekly:
            return f"(datediff(CAST({column} AS DATE), DATE '0001-01-01') DIV 7)"
        return f"(year({column}) * 12 + month({column}) - 1)"
    # SQLite keeps UTC text 'YYYY-MM-DD HH:MM:SS[.ffffff]': its date part, read exactly (a date's
    # julianday is a whole number and a half, exact in floating point).
    if weekly:
        return f"(CAST(julianday(substr({column}, 1, 10)) - {JULIAN_WEEK_ZERO} AS INTEGER) / 7)"
    return (
        f"(CAST(substr({column}, 1, 4) AS INTEGER) * 12"
        f" + CAST(substr({column}, 6, 2) AS INTEGER) - 1)"
    )


def plus_days(column: str, days: int) -> str:
    """`column` + `days` × 24 h, to the microsecond."""
    days = min(int(days), MAX_DAYS)
    if dialect() == "postgresql":
        # In hours, not days: a day of interval follows the session's time zone.
        return f"({column} + interval '{days * 24} hours')"
    if dialect() == "spark":  # a day-time interval: exact microseconds
        return f"({column} + INTERVAL '{days * 24}' HOUR)"
    # SQLite text 'YYYY-MM-DD HH:MM:SS[.ffffff]' in UTC: move the date part and keep the time of
    # day as stored (strftime's %f would cut it to milliseconds, date() may round it up a day).
    return f"(date(substr({column}, 1, 10), '+{days} days') || substr({column}, 11))"


def exact_sum(column: str) -> str:
    """SQL for the sum of a decimal column, exact on every database (see `to_fraction`).

    PostgreSQL and Spark sum their decimals exactly. SQLite stores decimals as floating point;
    summing whole parts and millionths apart keeps the stored six decimals exact.
    """
    if dialect() in ("postgresql", "spark"):
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
    (about log2(len(bounds)) comparisons a row; on Spark too). PostgreSQL's planner costs a CASE by all its
    branches: nested CASEs made a series look expensive enough to be compiled (JIT), which
    took longer than running it. When the statement already bounds the answer to [low, high]
    and they meet (one moment), the answer is a constant. The value must not be NULL.
    """
    high = len(bounds) if high is None else high
    if low >= high:
        return str(low), []
    if dialect() == "postgresql":
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


def squared(expression: str) -> str:
    """The square of a small decimal difference, in floating point on Spark: its decimal product
    would be rounded to fewer places than a deviation of cents needs."""
    if dialect() == "spark":
        return f"POWER(CAST({expression} AS DOUBLE), 2)"
    return f"({expression}) * ({expression})"


def larger(a: str, b: str) -> str:
    """The larger of two columns, or `b` where `a` is NULL (PostgreSQL's GREATEST skips NULLs,
    SQLite's MAX(a, b) returns NULL). Column names only: each is written twice."""
    return f"(CASE WHEN {a} > {b} THEN {a} ELSE {b} END)"


def fetchone(sql: str, params: list[Any]) -> tuple:
    current = _dialect.get()
    if current and current.run:
        return current.run(spark_statement(sql), params)[0]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()


def fetchall(sql: str, params: list[Any]) -> list[tuple]:
    current = _dialect.get()
    if current and current.run:
        return current.run(spark_statement(sql), params)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def spark_statement(sql: str) -> str:
    """A statement written for Django's cursors, as Spark SQL: positional `?` parameters, and
    `DOUBLE` for PostgreSQL's `DOUBLE PRECISION` (which Spark's parser does not know). The
    statements have no `%` but their placeholders."""
    return sql.replace("%s", "?").replace("DOUBLE PRECISION", "DOUBLE")
