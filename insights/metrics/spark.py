"""The metric engine where the customer's data lives: Apache Spark, through Spark Connect.

`on_source(source, plan_id)` runs every metric of the block (`measure`, `measure_series`,
`latest_event_at`, `first_event_at`, and the lifetime-value summaries) as Spark SQL on the
cluster: the same statements as on PostgreSQL (`sql` renders the few differences), over a
temporary view `insights_event` of the source table with DOMAIN §4's columns. Only results travel
back. Every failure is a `SourceError`, a `MetricError` whose message a CMO understands: a
re-test records it as an `error` run.

pyspark is the optional extra `[spark]`; this module imports it only when a source is opened.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import sql
from .engine import MetricError

REQUIRED = ("customer_id", "occurred_at", "event_type")
OPTIONAL = ("value", "segment", "channel")
# A table name, catalog.schema.table, or a path read by a format: parquet.`/data/events`.
TABLE = re.compile(r"(?:[A-Za-z_]\w*|`[^`]+`)(?:\.(?:[A-Za-z_]\w*|`[^`]+`))*")


class SourceError(MetricError):
    """The customer's data could not be read on their cluster; the message says why."""


class SourceUnavailable(SourceError):
    """The cluster did not answer at all: trying again later may well succeed."""


@dataclass(frozen=True)
class DataSource:
    """Where a plan's events live: a Spark Connect URL (`sc://host:15002`), a table
    (`catalog.schema.events`, or `parquet.`/path``), an optional token (sent as the URL's
    `;token=`; without TLS, Spark's client sends one only to `localhost`), and the source's
    column names for DOMAIN §4's columns where they differ (`{"occurred_at": "ts"}`)."""

    url: str
    table: str
    token: str = ""
    columns: Mapping[str, str] = field(default_factory=dict)

    def column(self, name: str) -> str:
        return self.columns.get(name, name)


def connect_url(source: DataSource) -> str:
    """The address with the token as one more of its `;name=value` parameters (a cluster out of
    this machine needs `;use_ssl=true` in its address: Spark's client sends a token in plain
    text only to localhost)."""
    if not source.token:
        return source.url
    if "/;" in source.url:
        return f"{source.url.rstrip(';')};token={source.token}"
    return f"{source.url.rstrip('/')}/;token={source.token}"


def open_source(source: DataSource) -> Any:
    """A Spark Connect session on the source's cluster (no call to it yet), in UTC."""
    try:
        from pyspark.sql.connect.client.retries import DefaultPolicy
        from pyspark.sql.connect.session import SparkSession
    except ImportError:
        raise SourceError(
            "This installation cannot reach Spark: the optional Spark support is not installed."
        ) from None
    url = connect_url(source)
    try:
        session = SparkSession.builder.remote(url).create()
    except Exception as error:
        raise SourceError(
            f"The Spark address “{source.url}” is not one Outside-In can use ({error})."
        ) from None
    # A dead cluster answers nothing: three quick tries, not Spark's ten minutes of retries.
    policy = DefaultPolicy(max_retries=3, initial_backoff=100, max_backoff=1000)
    session.client.set_retry_policies([policy])
    return session


def check(source: DataSource) -> tuple[int, dt.datetime | None]:
    """How many events the source holds and the moment of the latest: a connection test."""
    with _session(source) as run:
        ((events, latest),) = run(f"SELECT COUNT(*), MAX(occurred_at) FROM {sql.EVENTS}", [])
    return int(events), latest


@contextlib.contextmanager
def on_source(source: DataSource, plan_id: int) -> Iterator[None]:
    """Run the metrics of this block on the source's cluster, as the events of plan `plan_id`
    (the plan keeps its tests and event map; only the events live on the cluster)."""
    with _session(source, plan_id) as run, sql.using(sql.Dialect("spark", run)):
        yield


@contextlib.contextmanager
def _session(source: DataSource, plan_id: int = 0) -> Iterator[Any]:
    """A statement runner on the source's events; the session and its view are made at the
    first statement, so that a dead cluster fails the metric (an `error` run), not the caller."""
    opened: list[Any] = []

    def run(statement: str, params: list[Any]) -> list[tuple]:
        if not opened:
            if not TABLE.fullmatch(source.table):
                raise SourceError(f"“{source.table}” is not a table name Outside-In can read.")
            opened.append(_explained(source, lambda: _open_view(source, plan_id)))
        rows = _explained(source, lambda: opened[0].sql(statement, args=params).collect())
        return [tuple(_utc(value) for value in row) for row in rows]

    try:
        yield run
    finally:
        if opened:
            with contextlib.suppress(Exception):  # the cluster may be gone: nothing to release
                opened[0].stop()


def _open_view(source: DataSource, plan_id: int) -> Any:
    session = open_source(source)
    session.conf.set("spark.sql.session.timeZone", "UTC")
    present = {name.lower() for name in session.sql(f"SELECT * FROM {source.table}").columns}
    missing = [
        source.column(name) for name in REQUIRED if source.column(name).lower() not in present
    ]
    if missing:
        names = ", ".join(f"“{name}”" for name in missing)
        raise SourceError(
            f"The table {source.table} has no column {names}: each event needs a customer, a "
            "moment and a type. Map the table's columns onto them in the data source."
        )

    def read(name: str, cast: str) -> str:
        column = source.column(name)
        if column.lower() not in present:
            return "''" if cast == "STRING" else f"CAST(NULL AS {cast})"
        quoted = "`" + column.replace("`", "``") + "`"
        return f"CAST({quoted} AS {cast})"

    # The import's rules (DOMAIN §4): types lower-case, decimals to six places, no blank
    # segment or channel as NULL; rows without a customer, moment or type are no events. `id`
    # orders two scores of one customer at the very same moment (the file's order).
    session.sql(
        f"""CREATE OR REPLACE TEMPORARY VIEW {sql.EVENTS} AS
            SELECT * FROM (
                SELECT CAST({int(plan_id)} AS BIGINT) AS plan_id,
                       monotonically_increasing_id() AS id,
                       {read("customer_id", "STRING")} AS customer_id,
                       {read("occurred_at", "TIMESTAMP")} AS occurred_at,
                       lower({read("event_type", "STRING")}) AS event_type,
                       {read("value", "DECIMAL(20, 6)")} AS value,
                       COALESCE({read("segment", "STRING")}, '') AS segment,
                       COALESCE({read("channel", "STRING")}, '') AS channel
                FROM {source.table}
            ) source
            WHERE customer_id IS NOT NULL AND customer_id <> '' AND occurred_at IS NOT NULL
              AND event_type IS NOT NULL AND event_type <> ''"""
    )
    return session


def _utc(value: Any) -> Any:
    """pyspark gives timestamps as naive datetimes in this process's local time."""
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC)
    return value


def _explained(source: DataSource, call: Any) -> Any:
    """`call()`, with Spark's failures told as a CMO would want to hear them."""
    try:
        return call()
    except SourceError:
        raise
    except Exception as error:
        kind = SourceUnavailable if _unreachable(str(error)) else SourceError
        raise kind(_message(source, error)) from error


def _unreachable(text: str) -> bool:
    return "UNAVAILABLE" in text or "DEADLINE_EXCEEDED" in text or "failed to connect" in text


def _message(source: DataSource, error: Exception) -> str:
    text = str(error)
    kind = getattr(error, "getErrorClass", lambda: None)() or ""
    if "UNAUTHENTICATED" in text or "PERMISSION_DENIED" in text:
        return (
            f"The Spark cluster at {source.url} refused the access token: ask its administrator "
            "for a valid token and enter it in the data source."
        )
    if _unreachable(text):
        return (
            f"The Spark cluster at {source.url} does not answer: it may be stopped or out of "
            "reach from Outside-In. The test will run again at the next re-test."
        )
    if kind in ("TABLE_OR_VIEW_NOT_FOUND", "PATH_NOT_FOUND") or "not found" in text.lower():
        return (
            f"The Spark cluster has no table {source.table}: check the table's name in the "
            "data source."
        )
    if kind.startswith("CAST_") or "CAST_INVALID_INPUT" in text:
        return (
            f"Some values in {source.table} cannot be read as events (a moment that is not a "
            "date, or a value that is not a number)."
        )
    first = text.strip().splitlines()[0] if text.strip() else type(error).__name__
    return f"The Spark cluster could not compute this test: {first}"
