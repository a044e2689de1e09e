"""A Spark Connect server on loopback, requiring a token, for the tests of the metric engine on
Spark (`spark_server` in conftest.py, once per test session; the starter is bench/spark_server.py,
shared with `make bench spark`), and events written as Parquet."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest

from bench.spark_server import Server, SparkServerFailed, spark_connect_server, unavailable
from bench.spark_server import free_port as _free_port

__all__ = ["Server", "_free_port", "start_spark_server", "write_parquet"]

UTC = dt.UTC


def _unavailable(reason: str) -> None:
    if os.environ.get("REQUIRE_SERVICES") == "1":
        pytest.fail(f"{reason} (REQUIRE_SERVICES=1)")
    pytest.skip(reason)


def start_spark_server(tmp_path_factory):
    if reason := unavailable():
        _unavailable(reason)
    try:
        with spark_connect_server(tmp_path_factory.mktemp("spark")) as server:
            yield server
    except SparkServerFailed as error:
        pytest.fail(str(error))


def write_parquet(path: Path, rows, columns: dict[str, str] | None = None) -> str:
    """Rows as a Parquet file in DOMAIN §4's types (named as `columns` maps them)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    names = {name: name for name in ["customer_id", "occurred_at", "event_type", "value"]}
    names |= {"segment": "segment", "channel": "channel"} | (columns or {})
    table = pa.table(
        {
            names["customer_id"]: pa.array([r.customer for r in rows], pa.string()),
            names["occurred_at"]: pa.array(
                [r.at.astimezone(UTC) for r in rows], pa.timestamp("us", tz="UTC")
            ),
            names["event_type"]: pa.array([r.type.upper() for r in rows], pa.string()),
            names["value"]: pa.array([r.value for r in rows], pa.decimal128(20, 6)),
            names["segment"]: pa.array([r.segment for r in rows], pa.string()),
            names["channel"]: pa.array([r.channel for r in rows], pa.string()),
        }
    )
    path.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path / "events.parquet")
    return f"parquet.`{path}`"
