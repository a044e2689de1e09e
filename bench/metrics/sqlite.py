"""The SQLite half: the demo as `load_demo` makes it, its tests, histories and re-test, and
`manage.py retest` as a command."""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

from bench.metrics import BASE_DIR
from bench.metrics.compare import compare_plan, met, report_values, time_retests

SQLITE_TARGET_RATIO = 2.0
SQLITE_RETEST_TARGET_S = 3.0


def setup_demo() -> Any:
    """The demo plan and its events, as `load_demo` stores them (without its re-test)."""
    from django.core.management import call_command
    from django.db import transaction

    from insights import demo
    from planning.planfile import import_plan, load_plan_file

    call_command("migrate", verbosity=0)
    demo.ensure_demo_users(published_password=True)
    started = time.perf_counter()
    with transaction.atomic():
        plan, _ = import_plan(load_plan_file(demo.DEMO_PLAN_FILE), actor=None)
        count = demo.store_events(plan, demo.generate_events(), [])
    demo.analyze_events()
    print(
        f"events:      {count:,} of {demo.DEMO_CUSTOMERS:,} customers in the demo plan "
        f"{plan.slug}, stored as load_demo does in {time.perf_counter() - started:.1f}s"
    )
    return plan


def time_histories(plan: Any) -> None:
    """Every tested assumption's history, computed as `load_demo` does (from scratch)."""
    from insights.services.history import compute_plan_history

    cpu, started = time.thread_time(), time.perf_counter()
    histories = compute_plan_history(plan)
    seconds, cpu = time.perf_counter() - started, time.thread_time() - cpu
    moments = max(len(history.points) for history in histories)
    print(
        f"histories:   {seconds:.2f}s ({cpu:.2f}s CPU) for {len(histories)} assumptions, "
        f"{moments} moments each, computed from scratch"
    )
    slowest = sorted(histories, key=lambda history: -history.duration_ms)[:3]
    print(
        "  slowest:   "
        + "; ".join(
            f"{history.assumption.metric} {history.duration_ms} ms ({history.test.get('params')}, "
            f"window {history.test.get('window_days')})"
            for history in slowest
        )
    )


def time_command(slug: str) -> None:
    """`manage.py retest SLUG` as a command, and a command that stops right after start-up."""
    for args, what in (
        (["retest", "no-such-plan"], "start-up alone (`manage.py retest` of a missing plan)"),
        (["retest", slug], f"`manage.py retest {slug}`"),
    ):
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=BASE_DIR,
            check=False,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        print(f"command:     {time.perf_counter() - started:.2f}s: {what}")


def run() -> int:
    """The child on SQLite in its temporary var directory: its exit status."""
    import django

    django.setup()
    plan = setup_demo()
    rows = compare_plan(plan, SQLITE_TARGET_RATIO, by_cpu=True)
    time_histories(plan)
    best = time_retests(plan)
    print(
        f"re-test:     {best:.2f}s, the better of the two (target < {SQLITE_RETEST_TARGET_S:.0f} s): "
        f"{met(best < SQLITE_RETEST_TARGET_S)}"
    )
    time_command(plan.slug)
    return report_values(rows)
