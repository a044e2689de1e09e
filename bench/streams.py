"""Open boards against one web process: how many event streams it holds, how many database
connections and how much memory that costs, and whether the board still answers.

It starts a PostgreSQL of its own (max_connections 50, in a temporary directory, so the
machine's shared server is never filled), one uvicorn process on it (DEBUG=1, as `make run`
does; its pool DB_POOL_MAX_SIZE at the default), signs in BENCH_STREAMS_MEMBERS members
(default 125) and opens LIVE_MAX_STREAMS_PER_USER (8) streams for each: 1,000 by default. Then
it prints, side by side, the board's answer time with no stream open and with all of them
open, the connections the server holds and its resident memory. Nothing is asserted.

    python -m bench streams
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time

from tests import loadrig

PER_MEMBER = 8


async def _board_times(port: int, session: str, count: int = 20) -> list[float]:
    times = []
    for _ in range(count):
        status, took = await loadrig.get(port, session, "/plans/load/")
        if status != 200:
            raise RuntimeError(f"the board answered {status}")
        times.append(took * 1000)
    return times


def _p(times: list[float], q: float) -> float:
    ordered = sorted(times)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def _measure(web: loadrig.Web) -> dict:
    idle = await _board_times(web.port, web.sessions[0])
    memory_before = web.memory_mb()
    started = time.perf_counter()
    streams: list[loadrig.Stream] = []
    batch = 100  # the client opens them 100 at a time, as a crowd of browsers would
    wanted = [s for s in web.sessions for _ in range(PER_MEMBER)]
    for i in range(0, len(wanted), batch):
        streams += await asyncio.gather(
            *(loadrig.open_stream(web.port, s) for s in wanted[i : i + batch])
        )
    opened = time.perf_counter() - started
    try:
        await asyncio.sleep(1)
        held = sum(s.status == 200 for s in streams)
        connections = await asyncio.to_thread(loadrig.connections_used, web.database_url)
        busy = await _board_times(web.port, web.sessions[0])
        refused = await loadrig.open_stream(web.port, web.sessions[0])
        refused.writer.close()
        return {
            "held": held,
            "opened_s": opened,
            "connections": connections,
            "memory_before": memory_before,
            "memory": web.memory_mb(),
            "idle": idle,
            "busy": busy,
            "refused": refused.status,
        }
    finally:
        await loadrig.close_all(streams)


def main() -> int:
    members = int(os.environ.get("BENCH_STREAMS_MEMBERS", "125"))
    if loadrig.postgres_bin() is None:
        print("PostgreSQL's server programs are not installed: skipped.")
        return 0
    with loadrig.private_postgres(max_connections=50) as url:
        web = loadrig.Web(url)
        try:
            web.prepare(members=members)
            web.start()
            figures = asyncio.run(asyncio.wait_for(_measure(web), 600))
        finally:
            web.stop()
    f = figures
    print(
        f"streams held:        {f['held']:,} of {members * PER_MEMBER:,} asked for "
        f"(opened in {f['opened_s']:.1f} s); the {PER_MEMBER + 1}th of one member: HTTP {f['refused']}"
    )
    print(
        f"database connections: {f['connections']} (server max_connections 50; target: a handful)"
    )
    print(
        f"memory (RSS):         {f['memory']:.0f} MB with the streams open, "
        f"{f['memory_before']:.0f} MB before (target < 300 MB)"
    )
    print(
        f"board, no stream:     p50 {statistics.median(f['idle']):.0f} ms, p95 {_p(f['idle'], 0.95):.0f} ms"
    )
    print(
        f"board, all open:      p50 {statistics.median(f['busy']):.0f} ms, p95 {_p(f['busy'], 0.95):.0f} ms"
    )
    return 0
