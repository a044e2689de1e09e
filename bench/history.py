"""Histories (DOMAIN §10) against re-tests, on a million events over 24 months.

On a scratch database `outside_in_bench_history` it loads the metrics benchmark's data (the
demo's simulated customers, ~1,000,000 events, stretched back over 24 months) and its plan (the
demo's 31 tests and 19 more: 50 tested assumptions, every metric), then

- backfills every test's history from scratch: `compute_history` for each, one series of the
  end of every month and as_of (25 moments), each timed, beside the same test measured at as_of
  alone (`measure`);
- re-tests the plan (`retest_plan`) with the histories already computed, so that it measures
  the metrics and the runs' bookkeeping, as a scheduled re-test does between two imports.

The target: the backfill in at most 3x the re-test's time. Both are wall times, on a machine
that may be busy: the load average is printed before and after. Targets are printed, never
asserted.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres python -m bench history

BENCH_HISTORY_EVENTS changes the number of events (default 1,000,000), BENCH_HISTORY_MONTHS
the span (default 24).
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from bench.metrics import BASE_DIR, machine, postgres_url, scratch_database
from bench.metrics.compare import shape_of
from bench.metrics.postgres import setup

DB_NAME = "outside_in_bench_history"
TARGET_RATIO = 3.0


def main() -> int:
    url = postgres_url("history")
    if url is None:
        return 0
    print(f"machine:     {machine()}")
    with (
        scratch_database(url, DB_NAME) as bench_url,
        tempfile.TemporaryDirectory(prefix="outside-in-bench-history-") as tmp,
    ):
        env = {
            **os.environ,
            "DATABASE_URL": bench_url,
            "OUTSIDE_IN_VAR_DIR": tmp,
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
        }
        env.pop("REDIS_URL", None)  # re-tests signal open boards; there are none here
        child = subprocess.run(
            [sys.executable, "-m", "bench.history", "--child"], env=env, cwd=BASE_DIR, check=False
        )
    print(f"machine:     {machine()} (at the end)")
    return child.returncode


def timed(run: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = run()
    return time.perf_counter() - started, result


def backfill(plan: Any, as_of: Any) -> tuple[float, float]:
    """Every test's history from scratch, each beside the test at as_of alone; the totals."""
    from insights.metrics import measure
    from insights.models import AssumptionHistory
    from insights.services.history import compute_history
    from insights.services.retests import tested_assumptions

    AssumptionHistory.objects.filter(plan=plan).delete()
    header = (
        f"{'metric':<17} {'test':<56} {'moments':>7} {'history':>9} {'as_of alone':>11} "
        f"{'ratio':>6}"
    )
    print(header)
    print("-" * len(header))
    history_total = one_total = 0.0
    for assumption in tested_assumptions(plan):
        series, history = timed(partial(compute_history, assumption, plan=plan))
        one, _ = timed(partial(measure, assumption, plan.pk, as_of))
        assert history.status == AssumptionHistory.Status.READY, history.message
        history_total += series
        one_total += one
        shape = shape_of(assumption)
        print(
            f"{shape.metric:<17} {shape.label[:56]:<56} {len(history.points):>7} "
            f"{series * 1000:>7.0f}ms {one * 1000:>9.0f}ms {series / one:>5.1f}x",
            flush=True,
        )
    print()
    return history_total, one_total


def retest(plan: Any) -> float:
    """The plan re-tested, its histories computed: the better of two."""
    from insights.services.retests import retest_plan

    best = math.inf
    for what in ("first re-test (every verdict new)", "again (no verdict changes)"):
        took, runs = timed(lambda: retest_plan(plan))
        metric_s = sum(run.duration_ms for run in runs) / 1000
        print(
            f"retest_plan: {took:.2f}s for {len(runs)} assumptions, of which the runs' metrics "
            f"{metric_s:.2f}s: {what}"
        )
        best = min(best, took)
    return best


def _child() -> int:
    import django

    django.setup()
    from insights.metrics import latest_event_at

    plan = setup(
        int(os.environ.get("BENCH_HISTORY_EVENTS", "1000000")),
        months=int(os.environ.get("BENCH_HISTORY_MONTHS", "24")),
    )
    as_of = latest_event_at(plan.pk)
    assert as_of is not None
    print(f"as of:       {as_of:%Y-%m-%d %H:%M:%S} UTC, monthly histories")
    print()
    history, one = backfill(plan, as_of)
    retested = retest(plan)
    ratio = history / retested
    print()
    print(
        f"backfill:    {history:.2f}s, every test's history from scratch "
        f"(the same tests as of as_of alone: {one:.2f}s)"
    )
    print(f"re-test:     {retested:.2f}s, the better of the two")
    print(
        f"ratio:       {ratio:.2f}x (target ≤ {TARGET_RATIO:.0f}x): "
        f"{'met' if ratio <= TARGET_RATIO else 'NOT met'}"
    )
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        sys.exit(_child())
    sys.exit(main())
