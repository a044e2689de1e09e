"""A plan re-test on PostgreSQL against the same plan on Apache Spark (issue #14), at 1 M and
10 M events.

The parent starts one Spark Connect server on loopback (local mode, 2 cores, a token; the
starter of the tests, bench/spark_server.py) and, for each number of events, a child process on
a new scratch database `outside_in_bench_spark` (migrated). The child

- generates the events once, deterministically: the demo's simulated customers
  (`insights.demo.generate_events`, as many as make the number: ~650,000 customers for 10 M),
  with its event types, values on purchases, returns, reviews and surveys, segments and channels,
  over its 18 months; held in memory as Arrow columns;
- loads them both ways from there, each timed: `COPY` into `insights_event` for one plan (CSV
  encoded by pyarrow and streamed, the table with its indexes, then ANALYZE), and a Parquet file
  written by pyarrow for Spark;
- makes the same plan twice from the demo's plan file with ten of its tests, every metric kind
  of DOMAIN §5 (KEPT, EXTRA): one plan reads its imported events, the other has a data source
  on Spark (`PlanDataSource`, engine "spark", the Parquet file; saved through
  `save_data_source`, whose connection check is timed too);
- warms each engine up (each metric measured once, untimed: a Spark server long up has
  compiled its code paths, and the first size would otherwise pay for them), then re-tests each
  plan through `insights.services.retests.retest_plan` (within it
  `plan_engine`, so the Spark one runs as Spark SQL on the server): first with every history
  computed, as after new data, then again with the histories kept; per assumption, the run's
  metric time and its history's;
- checks that both engines give every run and every history point the same value, n and
  interval (to 1e-9) and the same status.

At the end the parent prints the figures of every size side by side. Times are printed, never
asserted; values that disagree make the run fail.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres python -m bench spark

Opt-in: `python -m bench` (and `make bench`) without names leaves it out, because it runs for
a quarter of an hour or more; `make bench spark` runs it. It needs the `[spark]` extra and Java 17.

BENCH_SPARK_EVENTS: the numbers of events, comma-separated (default 1000000,10000000);
BENCH_SPARK_MEMORY: the Spark driver's memory (default 2g; in local mode it runs the tasks too);
BENCH_KEEP=1 keeps the scratch database (of the last size) and prints where.
"""

from __future__ import annotations

import contextlib
import copy
import io
import itertools
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.metrics import BASE_DIR, machine, postgres_url, scratch_database
from bench.spark_server import SparkServerFailed, spark_connect_server, unavailable

DB_NAME = "outside_in_bench_spark"
SIZES = "1000000,10000000"
CORES = 2
TOKEN_ENV = "BENCH_SPARK_TOKEN"  # noqa: S105 (the name of the variable that holds it)
BATCH = 500_000
# The demo plan's tests kept, one or more of every metric kind (by how their statements begin)…
KEPT = (
    "At least 35% of first-time buyers buy again within 90 days",  # repeat_rate
    "At least 35% of shoppers who click one of our ads",  # conversion_rate
    "The pool is large",  # churn_rate, segment
    "Between 1,500 and 2,000 customers use the app",  # active_customers, channel, window
    "At least 55% of the customers we see in a quarter",  # stage_reach
    "Store baskets average at least $100",  # mean_value
    "The web shop sells at least $45,000 a quarter",  # total_value
    "Our NPS is at least 30",  # nps
)
# … and two of the metrics benchmark's over every event there is.
EXTRA = ("Active customers overall", "Revenue ever")


# ---------------------------------------------------------------------------------------------
# The parent: one Spark server, a scratch database and a child per size, the table at the end


def main() -> int:
    url = postgres_url("spark")
    if url is None:
        return 0
    if reason := unavailable():
        print(f"spark: skipped, {reason}")
        return 0
    sizes = [int(size) for size in os.environ.get("BENCH_SPARK_EVENTS", SIZES).split(",")]
    memory = os.environ.get("BENCH_SPARK_MEMORY", "2g")
    print(f"machine:     {machine()}")
    began = time.perf_counter()
    results, status = [], 0
    with contextlib.ExitStack() as stack:
        tmp = Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="outside-in-bench-spark-"))
        )
        started = time.perf_counter()
        try:
            server = stack.enter_context(
                spark_connect_server(tmp / "spark", cores=CORES, memory=memory)
            )
        except SparkServerFailed as error:
            print(f"spark: FAILED, {error}")
            return 1
        print(
            f"spark:       Spark Connect server, local[{CORES}], driver memory {memory}, "
            f"spark.sql.shuffle.partitions={CORES}, started in "
            f"{time.perf_counter() - started:.1f}s"
        )
        for size in sizes:
            print(f"\n--- {size:,} events ({machine()})", flush=True)
            with _database(url) as bench_url:
                code, result = _run_child(size, bench_url, server, tmp)
            status |= code
            if result:
                results.append(result)
        peak = _peak_rss(server.pid)
    _print_summary(results, memory, peak)
    print(f"\nmachine:     {machine()} (at the end)")
    print(f"whole bench: {time.perf_counter() - began:.0f}s")
    return status


@contextlib.contextmanager
def _database(url: str) -> Iterator[str]:
    """The scratch database, dropped at the end unless BENCH_KEEP=1."""
    with scratch_database(url, DB_NAME, keep=os.environ.get("BENCH_KEEP") == "1") as bench_url:
        yield bench_url


def _run_child(size: int, bench_url: str, server: Any, tmp: Path) -> tuple[int, dict | None]:
    work = tmp / f"events-{size}"
    work.mkdir()
    result = work / "result.json"
    env = {
        **os.environ,
        "DATABASE_URL": bench_url,
        "OUTSIDE_IN_VAR_DIR": str(work / "var"),
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
        "BENCH_SPARK_URL": server.url,
        TOKEN_ENV: server.token,
        "BENCH_SPARK_WORK": str(work),
    }
    env.pop("REDIS_URL", None)  # re-tests signal open boards; there are none here
    child = subprocess.run(
        [sys.executable, "-m", "bench.spark", "--child", str(size)],
        env=env,
        cwd=BASE_DIR,
        check=False,
    )
    found = json.loads(result.read_text()) if result.exists() else None
    return child.returncode, found


def _peak_rss(pid: int) -> str:
    """The Spark server's peak resident memory, from Linux's /proc (the JVM is its process)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return f"{int(line.split()[1]) / 1024**2:.1f} GB"
    except OSError:
        pass
    return "unknown"


def _print_summary(results: list[dict], memory: str, peak: str) -> None:
    if not results:
        return
    print()
    print(
        f"=== PostgreSQL against Spark (Spark Connect, local[{CORES}], driver memory {memory}, "
        f"the server's peak RSS {peak}), wall seconds"
    )
    header = (
        f"{'events':>11} {'customers':>9} | {'generate':>8} | {'COPY':>7} {'Parquet':>7} "
        f"{'check':>6} | "
        f"{'re-test: PG':>11} {'Spark':>7} {'Spark/PG':>8} | {'again: PG':>9} {'Spark':>7} "
        f"{'Spark/PG':>8} | {'agree':>5}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        first, again = r["retest"], r["again"]
        print(
            f"{r['events']:>11,} {r['customers']:>9,} | {r['generate']:>7.1f}s | "
            f"{r['copy']:>6.1f}s {r['parquet']:>6.1f}s {r['check']:>5.1f}s | "
            f"{first['postgres']:>10.1f}s "
            f"{first['spark']:>6.1f}s {first['spark'] / first['postgres']:>7.2f}x | "
            f"{again['postgres']:>8.1f}s {again['spark']:>6.1f}s "
            f"{again['spark'] / again['postgres']:>7.2f}x | "
            f"{r['agreeing']:>2}/{len(r['assumptions']):<2}"
        )
    print(
        "COPY: CSV encoding + COPY into insights_event with its indexes + ANALYZE; Parquet: "
        "pyarrow's write of the same columns (snappy); check: the Spark source saved and "
        "checked (its first session, a count and the latest event). re-test: retest_plan with every history "
        "computed; again: with the histories kept."
    )
    print()
    print("per assumption, the first re-test: the run's metric + its history's, seconds")
    sizes = [f"{r['events'] / 1e6:g} M" for r in results]
    head = f"{'metric':<16} {'test':<44}" + "".join(
        f" | {size + ' PG':>11} {'Spark':>7}" for size in sizes
    )
    print(head)
    print("-" * len(head))
    for i, first in enumerate(results[0]["assumptions"]):
        cells = ""
        for r in results:
            a = r["assumptions"][i]
            cells += f" | {a['postgres']['total']:>10.2f}s {a['spark']['total']:>6.2f}s"
        print(f"{first['metric']:<16} {first['label'][:44]:<44}{cells}")


# ---------------------------------------------------------------------------------------------
# The child: Django on the scratch database


def bench_plan(slug: str) -> dict:
    """The demo plan with only the KEPT tests, and one more choice with the EXTRA ones."""
    from bench.metrics.postgres import EXTRA_TESTS
    from insights.demo import DEMO_PLAN

    plan = copy.deepcopy(DEMO_PLAN)
    plan["slug"], plan["name"] = slug, f"{plan['name']} ({slug})"
    plan["retest_schedule"] = {"cadence": "off"}
    found = set()
    for choice in plan["choices"]:
        kept = []
        for assumption in choice["assumptions"]:
            prefix = next((p for p in KEPT if assumption["statement"].startswith(p)), None)
            if prefix or not assumption.get("test"):
                kept.append(assumption)
                found.add(prefix)
        choice["assumptions"] = kept
    assert found - {None} == set(KEPT), set(KEPT) - found
    extra = []
    for statement, test in EXTRA_TESTS:
        if statement in EXTRA:
            test = {"min_sample": 30, "segment": None, "channel": None, "window_days": None} | test
            extra.append(
                {"statement": statement, "importance": 3, "evidence": 1, "owner": "elena"}
                | {"test": test}
            )
    assert len(extra) == len(EXTRA)
    plan["choices"].append(
        {"title": "Benchmark: every event", "stages": ["Buy"], "owner": "elena"}
        | {"assumptions": extra}
    )
    return plan


def timed(run: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    result = run()
    return time.perf_counter() - started, result


def generate(size: int) -> tuple[Any, int]:
    """`size` of the demo's events as an Arrow table (DOMAIN §4's columns, the event_id and the
    dedupe key an import gives it), and how many customers they belong to."""
    import pyarrow as pa

    from insights import demo
    from insights.models import Event

    schema = pa.schema(
        [
            ("customer_id", pa.string()),
            ("occurred_at", pa.timestamp("us", tz="UTC")),
            ("event_type", pa.string()),
            ("value", pa.decimal128(20, 6)),
            ("segment", pa.string()),
            ("channel", pa.string()),
            ("event_id", pa.string()),
            ("dedupe_key", pa.string()),
        ]
    )
    batches, customers, last = [], 0, None
    events = itertools.islice(demo.generate_events(customers=10**9), size)
    while chunk := list(itertools.islice(events, BATCH)):
        columns: list[list[Any]] = [[] for _ in schema]
        for event in chunk:
            if event.customer_id != last:  # one customer's events come together
                customers, last = customers + 1, event.customer_id
            for column, value in zip(columns, event[1:], strict=False):
                column.append(value)
            columns[6].append(event.event_id)
            columns[7].append(Event.identity(event.event_id, {}, 0).hex)  # as an import keys it
        batches.append(pa.record_batch(columns, schema=schema))
    return pa.Table.from_batches(batches, schema=schema), customers


def write_parquet(events: Any, path: Path) -> tuple[float, str, int]:
    """The events as one Parquet file (row groups of a million rows: Spark splits by them)."""
    import pyarrow.parquet as pq

    path.mkdir(parents=True)
    columns = [name for name in events.column_names if name != "dedupe_key"]
    seconds, _ = timed(lambda: pq.write_table(events.select(columns), path / "events.parquet"))
    return seconds, f"parquet.`{path}`", (path / "events.parquet").stat().st_size


def copy_events(events: Any, plan_id: int) -> tuple[float, float, float]:
    """The events into insights_event for the plan, as CSV through one COPY; then ANALYZE.
    The seconds of the CSV encoding, of the COPY (its stream) and of ANALYZE."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    from django.db import connection, transaction

    columns = (
        "plan_id, customer_id, occurred_at, event_type, value, segment, channel, event_id, "
        "dedupe_key, attributes"
    )
    options = pacsv.WriteOptions(include_header=False)
    encoding = 0.0
    started = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor:
        statement = f"COPY insights_event ({columns}) FROM STDIN (FORMAT csv)"
        with cursor.copy(statement) as out:
            for batch in events.to_batches(max_chunksize=BATCH):
                encoded = time.perf_counter()
                rows = batch.num_rows
                plan, attributes = pa.array([plan_id] * rows), pa.array(["{}"] * rows)
                batch = pa.RecordBatch.from_arrays(
                    [plan, *batch.columns, attributes],
                    names=["plan_id", *batch.schema.names, "attributes"],
                )
                buffer = io.BytesIO()
                pacsv.write_csv(batch, buffer, options)
                encoding += time.perf_counter() - encoded
                out.write(buffer.getbuffer())
    copied = time.perf_counter() - started - encoding
    with connection.cursor() as cursor:
        analyzed, _ = timed(lambda: cursor.execute("ANALYZE insights_event"))
    return encoding, copied, analyzed


def make_plans(table: str) -> tuple[Any, Any, float, str]:
    """The plan on PostgreSQL, the plan on Spark (its source saved and checked), the check's
    seconds and message."""
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from insights.models import PlanDataSource
    from insights.services.sources import save_data_source
    from planning.planfile import import_plan

    call_command("migrate", verbosity=0)
    plans = []
    for slug in ("bench-spark-postgres", "bench-spark-spark"):
        data = bench_plan(slug)
        for member in data["members"]:  # the plan file names existing users
            get_user_model().objects.get_or_create(username=member["username"])
        plans.append(import_plan(data)[0])
    source = PlanDataSource(
        plan=plans[1],
        engine=PlanDataSource.Engine.SPARK,
        url=os.environ["BENCH_SPARK_URL"],
        table=table,
        token_env=TOKEN_ENV,
    )
    seconds, record = timed(lambda: save_data_source(source))
    return plans[0], plans[1], seconds, record.last_check_message


def warm_up(plan: Any) -> float:
    """Each of the plan's metrics measured once, nothing stored: a server long up has compiled
    its code paths (Spark's JVM); one just started would make the first size pay for it."""
    from insights.metrics import latest_event_at, measure
    from insights.services.history import tested_assumptions
    from insights.services.sources import plan_engine

    def run() -> None:
        with plan_engine(plan):
            as_of = latest_event_at(plan.pk)
            assert as_of is not None, "the plan has no events"
            for assumption in tested_assumptions(plan):
                measure(assumption, plan.pk, as_of)

    return timed(run)[0]


def retest(plan: Any) -> tuple[float, list[Any], dict[int, Any]]:
    """retest_plan, timed; its runs and the histories it computed, by assumption."""
    from insights.models import AssumptionHistory
    from insights.services.retests import retest_plan

    seconds, runs = timed(lambda: retest_plan(plan))
    histories = {h.assumption_id: h for h in AssumptionHistory.objects.filter(plan=plan)}
    return seconds, runs, histories


def _close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


def same_point(a: dict, b: dict) -> bool:
    return (
        a.get("as_of") == b.get("as_of")
        and a.get("n") == b.get("n")
        and a.get("status") == b.get("status")
        and all(_close(a.get(k), b.get(k)) for k in ("observed", "ci_low", "ci_high"))
    )


def differences(run: Any, other: Any, history: Any, other_history: Any) -> str:
    """What differs between the PostgreSQL run and history and the Spark ones ("": nothing)."""
    if run.message or other.message:
        return f"messages: {run.message!r} / {other.message!r}"
    pairs = {name: (getattr(run, name), getattr(other, name)) for name in ("observed", "n")}
    pairs |= {name: (getattr(run, name), getattr(other, name)) for name in ("ci_low", "ci_high")}
    wrong = [f"{name} {a} / {b}" for name, (a, b) in pairs.items() if not _close(a, b)]
    if run.status != other.status or run.as_of != other.as_of:
        wrong.append(f"status {run.status} / {other.status}, as_of {run.as_of} / {other.as_of}")
    points, others = history.points or [], other_history.points or []
    if history.status != other_history.status or len(points) != len(others):
        wrong.append(
            f"history {history.status} {len(points)} / {other_history.status} {len(others)}"
        )
    elif not all(same_point(a, b) for a, b in zip(points, others, strict=True)):
        wrong.append("history points differ")
    return "; ".join(wrong)


def _child(size: int) -> int:
    import django

    # pyspark's warning about pandas 3: the metric engine uses no pandas.
    warnings.filterwarnings("ignore", "PySpark does not yet fully support pandas", FutureWarning)
    django.setup()
    from bench.metrics.compare import shape_of
    from insights.services.history import tested_assumptions

    work = Path(os.environ["BENCH_SPARK_WORK"])
    generated, (events, customers) = timed(lambda: generate(size))
    print(
        f"events:      {events.num_rows:,} of {customers:,} customers generated in "
        f"{generated:.1f}s ({events.nbytes / 1024**2:,.0f} MB as Arrow columns)"
    )
    parquet, table, file_size = write_parquet(events, work / "parquet")
    print(f"Parquet:     {parquet:.1f}s, {file_size / 1024**2:,.0f} MB, read by Spark as {table}")
    on_postgres, on_spark, checked, message = make_plans(table)
    encoding, copied, analyzed = copy_events(events, on_postgres.pk)
    load = encoding + copied + analyzed
    print(
        f"COPY:        {load:.1f}s ({events.num_rows / load:,.0f} rows/s): CSV encoding "
        f"{encoding:.1f}s, COPY {copied:.1f}s, ANALYZE {analyzed:.1f}s"
    )
    del events
    print(f"source:      saved and checked in {checked:.1f}s: {message}")
    figures: dict[str, dict[str, float]] = {"retest": {}, "again": {}}
    found = {}
    for engine, plan in (("postgres", on_postgres), ("spark", on_spark)):
        warm = warm_up(plan)
        seconds, runs, histories = retest(plan)
        again, _, _ = retest(plan)
        figures["retest"][engine], figures["again"][engine] = seconds, again
        found[engine] = (runs, histories)
        print(
            f"{engine + ':':<12} re-test {seconds:.1f}s (metrics "
            f"{sum(r.duration_ms for r in runs) / 1000:.1f}s, histories "
            f"{sum(h.duration_ms for h in histories.values()) / 1000:.1f}s), again with the "
            f"histories kept {again:.1f}s; as of {runs[0].as_of:%Y-%m-%d %H:%M:%S}; "
            f"warmed up in {warm:.1f}s",
            flush=True,
        )
    header = (
        f"{'metric':<16} {'test':<44} {'status':<17} | {'PG metric':>9} {'history':>8} | "
        f"{'Spark metric':>12} {'history':>8} | same"
    )
    print()
    print(header)
    print("-" * len(header))
    assumptions, agreeing = [], 0
    pg_runs, pg_histories = found["postgres"]
    spark_runs, spark_histories = found["spark"]
    pairs = zip(tested_assumptions(on_postgres), pg_runs, spark_runs, strict=True)
    for assumption, pg, spark in pairs:
        pg_history = pg_histories[pg.assumption_id]
        spark_history = spark_histories[spark.assumption_id]
        wrong = differences(pg, spark, pg_history, spark_history)
        agreeing += not wrong
        shape = shape_of(assumption)
        times = {
            engine: {
                "metric": run.duration_ms / 1000,
                "history": history.duration_ms / 1000,
                "total": (run.duration_ms + history.duration_ms) / 1000,
            }
            for engine, run, history in (
                ("postgres", pg, pg_history),
                ("spark", spark, spark_history),
            )
        }
        assumptions.append(
            {"metric": shape.metric, "label": shape.label, "wrong": wrong}
            | {"postgres": times["postgres"], "spark": times["spark"]}
        )
        print(
            f"{shape.metric:<16} {shape.label[:44]:<44} {pg.status:<17} | "
            f"{times['postgres']['metric']:>8.2f}s {times['postgres']['history']:>7.2f}s | "
            f"{times['spark']['metric']:>11.2f}s {times['spark']['history']:>7.2f}s | "
            f"{'yes' if not wrong else 'NO: ' + wrong}"
        )
    print(
        f"values:      {agreeing} of {len(assumptions)} runs and histories the same on both "
        "engines (value, n, interval to 1e-9; status; every history point)"
    )
    result = {
        "events": size,
        "customers": customers,
        "generate": generated,
        "copy": load,
        "parquet": parquet,
        "check": checked,
        "agreeing": agreeing,
        "assumptions": assumptions,
        **figures,
    }
    (work / "result.json").write_text(json.dumps(result))
    return 0 if agreeing == len(assumptions) else 1


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        sys.exit(_child(int(sys.argv[2])))
    sys.exit(main())
