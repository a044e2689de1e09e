"""Open boards cannot take the site down: more event streams than the database has
connections, and the board still answers; past a person's cap, a clear 429.

Runs against a PostgreSQL of its own with 20 connections (tests/loadrig.py), never the shared one.
"""

from __future__ import annotations

import asyncio

import pytest

from tests import loadrig
from tests.conftest import REQUIRE_SERVICES

pytestmark = [pytest.mark.services, pytest.mark.slow]

MAX_CONNECTIONS = 20
MEMBERS = 10
PER_MEMBER = 8  # LIVE_MAX_STREAMS_PER_USER's default
POOL = 4  # DB_POOL_MAX_SIZE of the server under test


async def within(scenario, seconds: float = 120):
    """A server that stops answering fails the test instead of hanging the run."""
    return await asyncio.wait_for(scenario, seconds)


@pytest.fixture(scope="module")
def web():
    if loadrig.postgres_bin() is None:
        message = "PostgreSQL's server programs are not installed"
        if REQUIRE_SERVICES:
            pytest.fail(message + " and REQUIRE_SERVICES=1")
        pytest.skip(message)
    with loadrig.private_postgres(max_connections=MAX_CONNECTIONS) as url:
        server = loadrig.Web(url, env={"DB_POOL_MAX_SIZE": str(POOL)})
        try:
            server.prepare(members=MEMBERS)
            server.start()
            yield server
        finally:
            server.stop()


def test_more_streams_than_database_connections_and_the_board_still_answers(web):
    async def scenario():
        streams = await asyncio.gather(
            *(
                loadrig.open_stream(web.port, session)
                for session in web.sessions
                for _ in range(PER_MEMBER)
            )
        )
        try:
            used = await asyncio.to_thread(loadrig.connections_used, web.database_url)
            board = await loadrig.get(web.port, web.sessions[0], "/plans/load/")
            ninth = await loadrig.open_stream(web.port, web.sessions[0])
            body = await ninth.reader.read()
            ninth.writer.close()
            return [s.status for s in streams], used, board, ninth.status, ninth.head + body
        finally:
            await loadrig.close_all(streams)

    statuses, used, (board_status, _), ninth_status, body = asyncio.run(within(scenario()))
    assert len(statuses) == MEMBERS * PER_MEMBER > MAX_CONNECTIONS
    assert statuses == [200] * len(statuses), web.log_text()
    # No stream holds a connection while it waits: the process never has more than its pool.
    assert used <= POOL, f"{used} connections for {len(statuses)} open streams"
    assert board_status == 200, web.log_text()
    assert ninth_status == 429
    assert b"You have 8 live boards open, the most allowed" in body
    assert b"Retry-After: 30" in body


def test_closed_streams_give_their_places_back(web):
    async def scenario():
        first = [await loadrig.open_stream(web.port, web.sessions[1]) for _ in range(PER_MEMBER)]
        await loadrig.close_all(first)
        await asyncio.sleep(0.5)  # the server hears the disconnects
        again = [await loadrig.open_stream(web.port, web.sessions[1]) for _ in range(PER_MEMBER)]
        await loadrig.close_all(again)
        return [s.status for s in first + again]

    assert asyncio.run(within(scenario())) == [200] * (2 * PER_MEMBER)
