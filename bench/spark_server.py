"""A Spark Connect server on loopback, requiring a token: the one starter for `make bench spark`
and for the tests of the metric engine on Spark (tests/insights/spark_server.py).

It runs the server that ships inside pyspark (`SparkConnectServer` through `spark-submit`) in
local mode, in its own process group so that stopping it stops its JVM too.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any


class SparkServerFailed(Exception):
    """The server stopped or did not answer in time; the message ends with its log."""


@dataclasses.dataclass(frozen=True)
class Server:
    port: int
    token: str
    pid: int  # the server's JVM (spark-submit execs it)
    cores: int
    memory: str
    log: Path

    @property
    def url(self) -> str:
        # Spark's client sends a token without TLS only to `localhost`.
        return f"sc://localhost:{self.port}"

    def source(self, table: str, **kwargs: Any) -> Any:
        """The metric engine's `DataSource` for a table on this server."""
        from insights.metrics.spark import DataSource

        return DataSource(self.url, table, self.token, **kwargs)


def unavailable() -> str:
    """Why no server can start here (pyspark or Java missing), or "" when one can."""
    if importlib.util.find_spec("pyspark") is None:
        return "pyspark is not installed (pip install -e '.[spark]')"
    if shutil.which("java") is None:
        return "Java is not installed (Debian: openjdk-17-jre-headless)"
    return ""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def spark_connect_server(
    workdir: Path, *, cores: int = 2, memory: str = "1g", timeout: float = 180
) -> Iterator[Server]:
    """A server with `cores` local cores and `memory` for its driver (in local mode the driver
    runs the tasks too), its log and spill files in `workdir`; stopped at the end of the block."""
    import pyspark

    home = Path(pyspark.__file__).parent
    port, token = free_port(), secrets.token_hex(16)
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / "connect-server.log"
    command = [
        str(home / "bin" / "spark-submit"),
        "--class",
        "org.apache.spark.sql.connect.service.SparkConnectServer",
        "--master",
        f"local[{cores}]",
        "--driver-memory",
        memory,
        *("--conf", f"spark.connect.grpc.binding.port={port}"),
        *("--conf", "spark.connect.grpc.binding.address=127.0.0.1"),
        *("--conf", f"spark.connect.authenticate.token={token}"),
        *("--conf", "spark.ui.enabled=false"),
        *("--conf", f"spark.sql.shuffle.partitions={cores}"),
        *("--conf", f"spark.local.dir={workdir}"),
    ]
    env = {**os.environ, "SPARK_HOME": str(home), "SPARK_LOCAL_IP": "127.0.0.1"}
    with log.open("wb") as output:
        server = subprocess.Popen(
            command, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        _wait_for(server, port, log, timeout)
        yield Server(port, token, server.pid, cores, memory, log)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def _wait_for(server: subprocess.Popen, port: int, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SparkServerFailed(f"the Spark Connect server stopped:\n{log.read_text()[-3000:]}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    raise SparkServerFailed(f"the Spark Connect server did not start:\n{log.read_text()[-3000:]}")
