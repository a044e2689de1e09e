"""The event import against PostgreSQL's own bulk load.

Generates a 1,000,000-row events CSV, then on a scratch database `outside_in_bench` times
`run_import` (in a child process, whose peak memory is read from the kernel) and `psql \\copy`
of the same file into two tables: one with the events' indexes (made `LIKE insights_event`, so
the primary key, the unique dedupe index and the metric index are the migrations' own), and a
bare one with the same columns. It prints the three with both ratios. The target is the indexed
one (issue #14: the import within 1.5x of what PostgreSQL itself takes to fill such a table);
the bare-table ratio is the long-term aim, for a storage design that does not maintain B-trees
row by row. Targets are printed next to the figures, never asserted.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres python -m bench imports

BENCH_IMPORT_ROWS changes the number of rows (default 1,000,000).

It then times the plan-file import (DOMAIN §6) on the same scratch database: `import_plan` of
the largest plan file the PLANFILE_* limits allow, as a new plan, again unchanged, and with
every choice and assumption changed, each with its number of queries. The same timing alone,
on the configured database (SQLite by default; migrated), leaving nothing behind:

    python -m bench.imports --planfile
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
TARGET_INDEXED_RATIO = 1.5
AIM_BARE_RATIO = 2.0
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


def _psql(settings: Any) -> list[str]:
    base = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", DB_NAME]
    base += ["-h", settings["HOST"] or "127.0.0.1", "-p", str(settings["PORT"] or 5432)]
    return [*base, "-U", settings["USER"] or "postgres"]


# The events table's columns, constraints and indexes, as the migrations made them; what the file
# has no column for takes the value an import gives: its plan and import, no attributes, and a
# dedupe key as scattered as a hash.
INDEXED_TABLE = (
    "CREATE TABLE bench_indexed (LIKE insights_event INCLUDING ALL); "
    "ALTER TABLE bench_indexed ALTER plan_id SET DEFAULT 1, "
    "ALTER source_import_id SET DEFAULT 1, ALTER attributes SET DEFAULT '{}', "
    "ALTER dedupe_key SET DEFAULT gen_random_uuid()"
)
INDEXES = "SELECT indexdef FROM pg_indexes WHERE tablename = 'bench_indexed' ORDER BY indexname"
COLUMNS = HEADER.strip()


def _psql_copy(settings: Any, path: Path, table: str, create: str) -> float:
    """Seconds of `\\copy` of the file into `table`, made by `create` first."""
    env = {**os.environ, "PGPASSWORD": settings["PASSWORD"] or ""}
    base = _psql(settings)
    subprocess.run([*base, "-c", create], env=env, check=True)
    started = time.perf_counter()
    copy = f"\\copy {table} ({COLUMNS}) FROM '{path}' CSV HEADER"
    subprocess.run([*base, "-c", copy], env=env, check=True)
    return time.perf_counter() - started


def _indexes(settings: Any) -> list[str]:
    """The indexed table's indexes as read from the catalog: "unique btree (plan_id, …)"."""
    env = {**os.environ, "PGPASSWORD": settings["PASSWORD"] or ""}
    found = subprocess.run(
        [*_psql(settings), "-At", "-c", INDEXES], env=env, check=True, capture_output=True
    )
    return [
        ("unique " if " UNIQUE " in definition else "") + definition.split(" USING ", 1)[1]
        for definition in found.stdout.decode().splitlines()
    ]


FLOOR_TABLES = (
    "CREATE TABLE floor_staging (customer_id text, occurred_at text, event_type text, "
    "value text, segment text, channel text, event_id text); "
    "CREATE TABLE floor_events (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, "
    "customer_id text, occurred_at timestamptz, event_type text, value numeric, segment text, "
    "channel text, event_id text)"
)
FLOOR_INSERT = (
    "INSERT INTO floor_events (customer_id, occurred_at, event_type, value, segment, channel, "
    "event_id) SELECT customer_id, occurred_at::timestamptz, event_type, "
    "nullif(value, '')::numeric, segment, channel, event_id FROM floor_staging"
)


def _pipeline_floor(settings: Any, path: Path) -> tuple[float, float]:
    """The issue's pipeline at its barest: `\\copy` into a staging table, then INSERT … SELECT
    into a table with a primary key and no other index: no check, no dedupe key, no event
    index. (staging seconds, insert seconds)."""
    base = _psql(settings)
    env = {**os.environ, "PGPASSWORD": settings["PASSWORD"] or ""}
    subprocess.run([*base, "-c", FLOOR_TABLES], env=env, check=True)
    started = time.perf_counter()
    subprocess.run(
        [*base, "-c", f"\\copy floor_staging FROM '{path}' CSV HEADER"], env=env, check=True
    )
    staged = time.perf_counter()
    subprocess.run([*base, "-c", FLOOR_INSERT], env=env, check=True)
    return staged - started, time.perf_counter() - staged


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
            copy_seconds = _psql_copy(admin, path, "bench_raw", RAW_TABLE)
            indexed_seconds = _psql_copy(admin, path, "bench_indexed", INDEXED_TABLE)
            indexes = _indexes(admin)
            floor_staged, floor_inserted = _pipeline_floor(admin, path)
            plan_file, _ = _child(["planfile", "-"], env)
        finally:
            _drop(admin)
    seconds = first["seconds"]
    print(
        f"run_import:  {seconds:.2f}s, {rows / seconds:,.0f} rows/s "
        f"({first['status']}: {first['imported']:,} imported)"
    )
    if first["read"] is not None:
        print(
            f"  of which:  {first['read']:.2f}s reading, checking and storing alongside, "
            f"{first['stored']:.2f}s finishing the store"
        )
    print(
        f"psql \\copy:  {indexed_seconds:.2f}s, {rows / indexed_seconds:,.0f} rows/s into a table "
        f"with the events' indexes: {'; '.join(indexes)}"
    )
    print(f"             {copy_seconds:.2f}s, {rows / copy_seconds:,.0f} rows/s into a bare table")
    indexed, bare = seconds / indexed_seconds, seconds / copy_seconds
    print(
        f"ratio:       {indexed:.2f}x the indexed \\copy   (target ≤ {TARGET_INDEXED_RATIO}x: "
        f"{_met(indexed <= TARGET_INDEXED_RATIO)})"
    )
    print(
        f"             {bare:.2f}x the bare \\copy      (long-term aim ≤ {AIM_BARE_RATIO:.0f}x, "
        f"for a storage that does not keep B-trees row by row: {_met(bare <= AIM_BARE_RATIO)})"
    )
    floor = floor_staged + floor_inserted
    print(
        f"floor:       {floor:.2f}s = \\copy into a staging table {floor_staged:.2f}s + "
        f"INSERT … SELECT into a table with only a primary key {floor_inserted:.2f}s: "
        f"{floor / copy_seconds:.2f}x the bare \\copy before any check, dedupe or index"
    )
    print(
        f"peak memory: {peak / 2**20:.0f} MB   (target < {TARGET_PEAK_MB} MB: "
        f"{_met(peak < TARGET_PEAK_MB * 2**20)})"
    )
    print(
        f"re-import:   {again['seconds']:.2f}s, {again['duplicates']:,} duplicates skipped, "
        f"{again['imported']:,} imported"
    )
    _print_plan_file(plan_file)
    return 0


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


# ---------------------------------------------------------------------------------------------
# The plan file: the largest one the limits allow

TESTS = [
    ("repeat_rate", {"event_type": "purchase", "within_days": 90}, ">=", 0.3),
    ("nps", {"event_type": "survey"}, "between", [20, 40]),
    ("stage_reach", {"stage": "Stage 07"}, "<=", 0.25),
    (
        "conversion_rate",
        {"from_event": "visit", "to_event": "purchase", "within_days": 30},
        ">=",
        0.05,
    ),
    ("churn_rate", {"inactive_days": 90}, "<=", 0.2),
    ("mean_value", {"event_type": "purchase"}, ">=", 40),
    ("active_customers", {}, ">=", 1000),
    ("total_value", {"event_type": "purchase"}, ">=", 100000),
]
ROLES = ["facilitator", "cmo", "cio", "bu_leader", "observer"]


def largest_plan_file(limits: Any) -> dict[str, Any]:
    """As many stages, event types, members, choices, assumptions (each with a test, spread
    evenly over the choices) and BT initiatives as `limits` (the settings) allow, each naming
    the others as a real plan does: stages, owners, choices."""
    stages = [f"Stage {i:02d}" for i in range(limits.PLANFILE_MAX_STAGES)]
    users = [f"bench_user_{i:03d}" for i in range(limits.PLANFILE_MAX_MEMBERS)]
    members: list[dict[str, Any]] = []
    for i, username in enumerate(users):
        role = ROLES[i % len(ROLES)]
        unit = {"business_unit": f"Unit {i % 7}"} if role == "bu_leader" else {}
        members.append({"username": username, "role": role, **unit})
    # An observer owns nothing (the board's forms refuse one): owners are the other members.
    owners = [m["username"] for m in members if m["role"] != "observer"]
    count = limits.PLANFILE_MAX_CHOICES
    per_choice = limits.PLANFILE_MAX_ASSUMPTIONS // count
    titles = [f"Choice {c:03d}: grow the repeat business of segment {c % 11}" for c in range(count)]
    choices = []
    for c, title in enumerate(titles):
        assumptions = []
        for a in range(per_choice):
            metric, params, comparator, threshold = TESTS[(c * per_choice + a) % len(TESTS)]
            test = {
                "metric": metric,
                "params": params,
                "comparator": comparator,
                "threshold": threshold,
                "min_sample": 30,
                "segment": None,
                "channel": "web" if a % 2 else None,
                "window_days": 90 if a % 3 else None,
            }
            assumptions.append(
                {
                    "statement": f"Assumption {a} of choice {c}: customers do as the plan expects",
                    "importance": 1 + (c + a) % 5,
                    "evidence": 1 + (c * a) % 5,
                    "owner": owners[(c + a) % len(owners)],
                    "test": test,
                }
            )
        choices.append(
            {
                "title": title,
                "stages": [stages[(c + k) % len(stages)] for k in (0, 7, 19)],
                "status": ["proposed", "adopted", "rejected", "retired"][c % 4],
                "horizon": ["now", "next", "later"][c % 3],
                "owner": owners[c % len(owners)],
                "business_unit": f"Unit {c % 7}",
                "rationale": "Repeat buyers are worth three times first-time buyers. " * 4,
                "assumptions": assumptions,
            }
        )
    initiatives = [
        {
            "title": f"Initiative {i:03d}: a platform for choice {i}",
            "stages": [stages[i % len(stages)], stages[(i + 3) % len(stages)]],
            "choices": [titles[(i + k) % count] for k in range(3)],
            "cost_estimate": 1000 * i + 0.5,
            "status": ["proposed", "planned", "in_progress", "done", "cancelled"][i % 5],
        }
        for i in range(limits.PLANFILE_MAX_INITIATIVES)
    ]
    return {
        "name": "Largest plan",
        "slug": "largest-plan",
        "description": "Every limit, at once.",
        "stages": stages,
        "event_map": {
            f"event_{i:04d}": stages[i % len(stages)]
            for i in range(limits.PLANFILE_MAX_EVENT_TYPES)
        },
        "members": members,
        "retest_schedule": {
            "cadence": "weekly",
            "weekday": "mon",
            "time": "07:00",
            "timezone": "Europe/Paris",
        },
        "choices": choices,
        "bt_initiatives": initiatives,
    }


def _every_item_changed(data: dict[str, Any]) -> dict[str, Any]:
    changed = json.loads(json.dumps(data))
    for choice in changed["choices"]:
        choice["status"] = "proposed" if choice["status"] == "adopted" else "adopted"
        for assumption in choice["assumptions"]:
            assumption["test"]["min_sample"] += 1  # a new test: its verdict goes too
    return changed


def time_plan_file() -> dict[str, Any]:
    """Seconds and queries of `import_plan` on the largest plan file, in a transaction that is
    rolled back: as a new plan, the same file again, then every item changed."""
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.db import connection, transaction

    from planning.planfile import import_plan

    data = largest_plan_file(settings)
    size = len(json.dumps(data).encode())
    assert size <= settings.PLANFILE_MAX_BYTES
    runs = [("new plan", data), ("same file again", data)]
    runs.append(("every item changed", _every_item_changed(data)))
    answer: dict[str, Any] = {"database": connection.vendor, "bytes": size, "runs": []}
    with transaction.atomic():
        users = get_user_model()
        users.objects.bulk_create(
            [users(username=m["username"]) for m in data["members"]], ignore_conflicts=True
        )
        for name, content in runs:
            seconds, queries = _counted(connection, import_plan, json.loads(json.dumps(content)))
            answer["runs"].append({"name": name, "seconds": seconds, "queries": queries})
        transaction.set_rollback(True)
    return answer


def _counted(connection: Any, function: Any, *args: Any) -> tuple[float, int]:
    """How long `function(*args)` took, and how many statements it sent the database."""
    queries = 0

    def count(execute: Any, *sql: Any) -> Any:
        nonlocal queries
        queries += 1
        return execute(*sql)

    with connection.execute_wrapper(count):
        started = time.perf_counter()
        function(*args)
        return time.perf_counter() - started, queries


def _print_plan_file(answer: dict[str, Any]) -> None:
    print(
        f"plan file:   the largest the limits allow ({answer['bytes'] / 1e6:.1f} MB), "
        f"import_plan on {answer['database']}:"
    )
    for run in answer["runs"]:
        print(f"  {run['name']:<20} {run['seconds']:6.2f}s  {run['queries']:7,} queries")


# ---------------------------------------------------------------------------------------------
# The children: Django set up against the scratch database


def _child_main(command: str, argument: str) -> None:
    import django

    django.setup()
    from django.core.management import call_command

    if command == "planfile":
        print(json.dumps(time_plan_file()))
        return

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

    engine_log = logging.getLogger("insights.services.imports.engine")
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
    elif sys.argv[1:2] == ["--planfile"]:
        import django

        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
        django.setup()
        _print_plan_file(time_plan_file())
    else:
        sys.exit(main())
