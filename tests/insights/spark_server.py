"""A Spark Connect server on loopback, requiring a token, for the tests of the metric engine on
Spark (`spark_server` in conftest.py, once per test session), and events written as Parquet."""

from __future__ import annotations

import dataclasses
import datetime as dt
import importlib.util
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

UTC = dt.UTC


def _unavailable(reason: str) -> None:
    if os.environ.get("REQUIRE_SERVICES") == "1":
        pytest.fail(f"{reason} (REQUIRE_SERVICES=1)")
    pytest.skip(reason)


@dataclasses.dataclass(frozen=True)
class Server:
    port: int
    token: str

    def source(self, table: str, **kwargs):
        from insights.metrics.spark import DataSource

        return DataSource(f"sc://localhost:{self.port}", table, self.token, **kwargs)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_spark_server(tmp_path_factory):
    if importlib.util.find_spec("pyspark") is None:
        _unavailable("pyspark is not installed (pip install -e '.[spark]')")
    java = shutil.which("java")
    if java is None:
        _unavailable("Java is not installed (Debian: openjdk-17-jre-headless)")
    import pyspark

    home = Path(pyspark.__file__).parent
    port, token = _free_port(), secrets.token_hex(16)
    log = tmp_path_factory.mktemp("spark") / "connect-server.log"
    command = [
        str(home / "bin" / "spark-submit"),
        "--class",
        "org.apache.spark.sql.connect.service.SparkConnectServer",
        "--master",
        "local[2]",
        "--driver-memory",
        "1g",
        *("--conf", f"spark.connect.grpc.binding.port={port}"),
        *("--conf", "spark.connect.grpc.binding.address=127.0.0.1"),
        *("--conf", f"spark.connect.authenticate.token={token}"),
        *("--conf", "spark.ui.enabled=false"),
        *("--conf", "spark.sql.shuffle.partitions=2"),
        *("--conf", f"spark.local.dir={log.parent}"),
    ]
    env = {**os.environ, "SPARK_HOME": str(home), "SPARK_LOCAL_IP": "127.0.0.1"}
    with log.open("wb") as output:
        server = subprocess.Popen(
            command, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if server.poll() is not None:
                pytest.fail(f"the Spark Connect server stopped:\n{log.read_text()[-3000:]}")
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.5)
        else:
            pytest.fail(f"the Spark Connect server did not start:\n{log.read_text()[-3000:]}")
        yield Server(port, token)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


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
