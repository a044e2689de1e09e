from __future__ import annotations

import pytest

from tests.insights.spark_server import Server, start_spark_server


@pytest.fixture(scope="session")
def spark_server(tmp_path_factory) -> Server:
    """A Spark Connect server on loopback, shared by every test of the session that uses it."""
    yield from start_spark_server(tmp_path_factory)
