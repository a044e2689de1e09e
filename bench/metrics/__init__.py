"""The metric engine against hand-written SQL: on PostgreSQL with a million events, and on the
SQLite default with the demo.

PostgreSQL (when DATABASE_URL names one): on a scratch database `outside_in_bench_metrics` it
loads ~1,000,000 events of the demo's simulated customers (`insights.demo.generate_events`,
scaled up) with `COPY`, creates the demo plan's 31 tests and 19 more (50 tested assumptions,
every metric), then for each distinct test times `insights.metrics.measure` and a statement
written here, independently, for the same value (best of 3 each, taken in turns; a test above
the target, 1.5x, is timed 10 times more before it is called slow), checks that both give the
same value and n, and prints their ratio. Last, it times `retest_plan` for the whole plan.

SQLite (always): in a temporary var directory, the demo as `load_demo` makes it (its plan file,
insights/data/northwind-fy2027.json, and its ~154,000 events of 10,000 customers over 18 months),
each distinct test of the demo plan against a hand-written SQLite statement (target 2x), then
the plan's histories computed as `load_demo` does, and a re-test of the plan (target < 3 s),
with where its time goes; last, `manage.py retest` of the demo as a command, start-up included.
SQLite runs inside this process, so beside wall times the CPU time of this thread is shown: on a
busy machine it is what the statement costs, while the wall time also holds the wait for a CPU.
The SQLite ratio is judged on CPU time.

Targets are printed next to the figures, never asserted; a value that disagrees makes the run
fail.

    python -m bench metrics                                                # SQLite only
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres python -m bench metrics

BENCH_METRICS_EVENTS changes the number of PostgreSQL events (default 1,000,000).

The parts: this module is the parent (a scratch database, a child process per database);
`postgres` and `sqlite` are the two children, `compare` times the engine against the
hand-written statements of `hand` for both.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

DB_NAME = "outside_in_bench_metrics"
BASE_DIR = Path(__file__).resolve().parent.parent.parent

# ---------------------------------------------------------------------------------------------
# The parent: a scratch database, and a child process that runs Django against it


@contextlib.contextmanager
def scratch_database(url: str, name: str, *, keep: bool = False) -> Iterator[str]:
    """A new empty database `name` on the server of `url`; its URL; dropped at the end unless
    `keep` (then it is said where it stays).

    Also used by the board and Spark benchmarks."""
    import dj_database_url
    import psycopg

    admin = dj_database_url.parse(url)

    def run(statement: str) -> None:
        with psycopg.connect(
            host=admin["HOST"] or None,
            port=admin["PORT"] or None,
            user=admin["USER"] or None,
            password=admin["PASSWORD"] or None,
            dbname=admin["NAME"],
            autocommit=True,
        ) as conn:
            conn.execute(statement)

    run(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    run(f"CREATE DATABASE {name}")
    scratch = url.rsplit("/", 1)[0] + "/" + name
    try:
        yield scratch
    finally:
        if keep:
            print(f"kept:        {scratch}")
        else:
            run(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def postgres_url(bench: str) -> str | None:
    url = os.environ.get("DATABASE_URL", "")
    if url.startswith(("postgres://", "postgresql://")):
        return url
    print(f"{bench}: skipped, it needs PostgreSQL: DATABASE_URL=postgres://…/postgres")
    return None


def machine() -> str:
    """The CPUs and how busy they are: other work on the machine slows every figure."""
    one, five, _ = os.getloadavg()
    return f"{os.cpu_count()} CPUs, load average {one:.1f} (1 min), {five:.1f} (5 min)"


def main() -> int:
    print(f"machine:     {machine()}")
    status = run_child("--child-sqlite", {"DATABASE_URL": None}, "SQLite")
    url = postgres_url("metrics on PostgreSQL")
    if url is not None:
        with scratch_database(url, DB_NAME) as bench_url:
            status |= run_child("--child", {"DATABASE_URL": bench_url}, "PostgreSQL")
    print(f"machine:     {machine()} (at the end)")
    return status


def run_child(flag: str, database: dict[str, str | None], label: str) -> int:
    """`python -m bench.metrics FLAG` in a temporary var directory, on that database."""
    print()
    print(f"--- {label}", flush=True)
    with tempfile.TemporaryDirectory(prefix="outside-in-bench-metrics-") as tmp:
        env = {
            **os.environ,
            "OUTSIDE_IN_VAR_DIR": tmp,
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
        }
        env.pop("REDIS_URL", None)  # re-tests signal open boards; there are none here
        for name, value in database.items():
            if value is None:
                env.pop(name, None)
            else:
                env[name] = value
        child = subprocess.run(
            [sys.executable, "-m", "bench.metrics", flag], env=env, cwd=BASE_DIR, check=False
        )
    return child.returncode
