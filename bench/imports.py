"""The event import against PostgreSQL's own bulk load.

Generates a 1,000,000-row events CSV, then on a scratch database `outside_in_bench` times
`run_import` (in a child process, whose peak memory is read from the kernel) and `psql \\copy`
of the same file into a bare table with the same columns, and prints both with their ratio.
Targets are printed next to the figures, never asserted.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres python -m bench imports

BENCH_IMPORT_ROWS changes the number of rows (default 1,000,000).
"""

from __future__ import annotations

import json
import logging
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

DB_NAME = "outside_in_bench"
TARGET_RATIO = 2.0
TARGET_PEAK_MB = 300
HEADER = "customer_id,occurred_at,event_type,value,segment,channel,event_id\n"
RAW_TABLE = (
    "CREATE TABLE bench_raw (customer_id text, occurred_at timestamptz, event_type text, "
    "value numeric, segment text, channel text, event_id text)"
)


def generate(path: Path, rows: int) -> None:
    """A realistic file: date-times with and without zone, some date-only, values on purchases."""
    rng = random.Random(2026)
    types = ["purchase", "visit", "visit", "support_ticket", "survey"]
    segments = ["retail", "smb", "enterprise", "public"]
    channels = ["web", "store", "app", "phone"]
    with open(path, "w", encoding="utf-8", newline="") as out:
        out.write(HEADER)
        chunk: list[str] = []
        for i in range(rows):
            kind = types[i % 5]
            month, day = 1 + i % 12, 1 + i % 28
            if i % 10 == 0:
                at = f"2026-{month:02d}-{day:02d}"
            elif i % 10 == 1:
                at = f"2026-{month:02d}-{day:02d}T{i % 24:02d}:{i % 60:02d}:05+01:00"
            else:
                at = f"2026-{month:02d}-{day:02d}T{i % 24:02d}:{i % 60:02d}:{i % 59:02d}Z"
            if kind == "purchase":
                value = f"{rng.randint(1, 99999) / 100:.2f}"
            elif kind == "survey":
                value = str(rng.randint(0, 10))
            else:
                value = ""
            chunk.append(
                f"C{rng.randint(1, 200_000):07d},{at},{kind},{value},"
                f"{segments[i % 4]},{channels[i % 3]},E{i:09d}\n"
            )
            if len(chunk) == 50_000:
                out.writelines(chunk)
                chunk = []
        out.writelines(chunk)


# ---------------------------------------------------------------------------------------------
# The parent: database, file, children, psql, report


def _admin(settings: Any, dbname: str) -> Any:
    import psycopg

    return psycopg.connect(
        host=settings["HOST"] or None,
        port=settings["PORT"] or None,
        user=settings["USER"] or None,
        password=settings["PASSWORD"] or None,
        dbname=dbname,
        autocommit=True,
    )


def _drop(settings: Any) -> None:
    with _admin(settings, settings["NAME"]) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")


def _child(args: list[str], env: dict[str, str]) -> tuple[dict[str, Any], int]:
    """Run `python -m bench.imports --child …`: (its JSON answer, its peak memory in bytes)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.imports", "--child", *args],
        env=env,
        stdout=subprocess.PIPE,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert process.stdout is not None
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise SystemExit(f"bench child {args[0]} exited with {process.returncode}")
    return json.loads(output.decode().strip().splitlines()[-1]), usage.ru_maxrss * 1024


def _psql_copy(settings: Any, path: Path) -> float:
    env = {**os.environ, "PGPASSWORD": settings["PASSWORD"] or ""}
    base = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", DB_NAME]
    base += ["-h", settings["HOST"] or "127.0.0.1", "-p", str(settings["PORT"] or 5432)]
    base += ["-U", settings["USER"] or "postgres"]
    subprocess.run([*base, "-c", RAW_TABLE], env=env, check=True)
    started = time.perf_counter()
    subprocess.run([*base, "-c", f"\\copy bench_raw FROM '{path}' CSV HEADER"], env=env, check=True)
    return time.perf_counter() - started


def main() -> int:
    import dj_database_url

    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        print("imports: skipped, it needs PostgreSQL: DATABASE_URL=postgres://…/postgres")
        return 0
    rows = int(os.environ.get("BENCH_IMPORT_ROWS", "1000000"))
    admin = dj_database_url.parse(url)
    bench_url = url.rsplit("/", 1)[0] + "/" + DB_NAME
    with tempfile.TemporaryDirectory(prefix="outside-in-bench-") as tmp:
        path = Path(tmp) / "events.csv"
        started = time.perf_counter()
        generate(path, rows)
        size = path.stat().st_size
        print(
            f"file:        {rows:,} rows, {size / 1e6:.1f} MB ({time.perf_counter() - started:.1f}s)"
        )
        _drop(admin)
        with _admin(admin, admin["NAME"]) as conn:
            conn.execute(f"CREATE DATABASE {DB_NAME}")
        env = {
            **os.environ,
            "DATABASE_URL": bench_url,
            "OUTSIDE_IN_VAR_DIR": tmp,
            "MEDIA_ROOT": str(Path(tmp) / "media"),
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "LOG_LEVEL": "WARNING",
        }
        env.pop("REDIS_URL", None)  # the progress cache goes to files in the temporary folder
        try:
            setup, _ = _child(["setup", str(path)], env)
            first, peak = _child(["import", str(setup["first"])], env)
            again, _ = _child(["import", str(setup["again"])], env)
            copy_seconds = _psql_copy(admin, path)
        finally:
            _drop(admin)
    seconds = first["seconds"]
    ratio = seconds / copy_seconds
    print(
        f"run_import:  {seconds:.2f}s, {rows / seconds:,.0f} rows/s "
        f"({first['status']}: {first['imported']:,} imported)"
    )
    if first["read"] is not None:
        print(
            f"  of which:  {first['read']:.2f}s reading and checking, {first['stored']:.2f}s storing"
        )
    print(f"psql \\copy:  {copy_seconds:.2f}s, {rows / copy_seconds:,.0f} rows/s (bare table)")
    print(
        f"ratio:       {ratio:.2f}x   (target ≤ {TARGET_RATIO:.0f}x: {_met(ratio <= TARGET_RATIO)})"
    )
    print(
        f"peak memory: {peak / 2**20:.0f} MB   (target < {TARGET_PEAK_MB} MB: "
        f"{_met(peak < TARGET_PEAK_MB * 2**20)})"
    )
    print(
        f"re-import:   {again['seconds']:.2f}s, {again['duplicates']:,} duplicates skipped, "
        f"{again['imported']:,} imported"
    )
    return 0


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


# ---------------------------------------------------------------------------------------------
# The children: Django set up against the scratch database


def _child_main(command: str, argument: str) -> None:
    import django

    django.setup()
    from django.core.management import call_command

    from insights.services.imports import create_import, run_import
    from planning.services import create_plan

    if command == "setup":
        call_command("migrate", verbosity=0)
        plan = create_plan("Bench", "bench")
        ids = {}
        for name in ("first", "again"):
            with open(argument, "rb") as upload:
                ids[name] = create_import(plan, upload, "events.csv").pk
        print(json.dumps(ids))
        return
    phases: list[tuple] = []

    class Phases(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "read and checked" in str(record.msg):
                phases.append(tuple(record.args or ()))

    engine_log = logging.getLogger("insights.services.imports")
    engine_log.addHandler(Phases())
    engine_log.setLevel(logging.INFO)
    engine_log.propagate = False
    started = time.perf_counter()
    record = run_import(int(argument))
    seconds = time.perf_counter() - started
    assert record is not None
    answer = {
        "seconds": seconds,
        "status": record.status,
        "imported": record.rows_imported,
        "duplicates": record.rows_duplicate,
        "message": record.message,
        "read": phases[0][2] if phases else None,
        "stored": phases[0][3] if phases else None,
    }
    print(json.dumps(answer))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        _child_main(sys.argv[2], sys.argv[3])
    else:
        sys.exit(main())
