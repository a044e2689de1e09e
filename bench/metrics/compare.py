"""Each distinct test of a plan: the engine against the hand-written statement, timed in turns;
then the whole plan re-tested. Both halves, PostgreSQL and SQLite, print through these."""

from __future__ import annotations

import datetime as dt
import json
import math
import time
from dataclasses import dataclass
from functools import partial
from typing import Any

from bench.metrics.hand import HAND, Shape, hand_measure
from bench.timing import Timing, best_of_each

REPEATS = 3
# A test above the target is timed again, this many more times, before it is called slow: on a
# busy machine one unlucky moment can double a best of 3.
RECHECK_REPEATS = 10


def agree(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


def shape_of(assumption: Any) -> Shape:
    from planning.models import clean_metric_params

    params = clean_metric_params(assumption.metric, assumption.params)
    return Shape(
        assumption.metric,
        tuple(sorted(params.items())),
        assumption.segment,
        assumption.channel,
        assumption.window_days,
    )


@dataclass
class Row:
    shape: Shape
    assumption: Any
    engine: Timing
    hand: Timing
    verdict: str
    same: bool
    by_cpu: bool  # judged on CPU time (SQLite, in this process) rather than wall time

    @property
    def ratio(self) -> float:
        if self.by_cpu:
            return self.engine.cpu / max(self.hand.cpu, 1e-6)
        return self.engine.wall / self.hand.wall

    def figures(self) -> str:
        text = (
            f"{self.engine.wall * 1000:>7.1f}ms {self.hand.wall * 1000:>7.1f}ms "
            f"{self.engine.wall / self.hand.wall:>5.2f}x"
        )
        if self.by_cpu:
            text += (
                f"  {self.engine.cpu * 1000:>7.1f}ms {self.hand.cpu * 1000:>7.1f}ms "
                f"{self.ratio:>5.2f}x"
            )
        return text


def compare_plan(plan: Any, target: float, *, by_cpu: bool) -> list[Row]:
    """Each distinct test of the plan as of its latest event, timed against its hand-written
    statement; those above the target timed again; the worst per metric."""
    from insights.metrics import latest_event_at

    as_of = latest_event_at(plan.pk)
    assert as_of is not None
    rows = compare(plan, as_of, target, by_cpu=by_cpu)
    recheck(rows, plan, as_of, target)
    summarise(rows, target)
    return rows


def compare(plan: Any, as_of: dt.datetime, target: float, *, by_cpu: bool) -> list[Row]:
    """Each distinct test of the plan: the engine and the hand-written statement, timed."""
    from insights.metrics import measure
    from insights.services.retests import tested_assumptions

    assumptions = list(tested_assumptions(plan))
    print(
        f"tests:       {len(assumptions)} tested assumptions, as of {as_of:%Y-%m-%d %H:%M:%S} UTC"
    )
    judged = "CPU" if by_cpu else "wall"
    print(
        f"timings:     best of {REPEATS}, taken in turns; ratio = engine / hand-written SQL "
        f"({judged} time), target ≤ {target}x (!: above it)"
    )
    print()
    header = f"{'metric':<17} {'test':<56} {'engine':>9} {'hand SQL':>9} {'ratio':>6}"
    if by_cpu:
        header += f"  {'CPU':>9} {'hand CPU':>9} {'ratio':>6}"
    header += "    values"
    print(header)
    print("-" * (len(header) + 24))
    rows: list[Row] = []
    seen: set[Shape] = set()
    for assumption in assumptions:
        shape = shape_of(assumption)
        if shape in seen:
            continue
        seen.add(shape)
        (engine, m), (hand, (value, n)) = best_of_each(
            partial(measure, assumption, plan.pk, as_of),
            partial(hand_measure, shape, plan.pk, as_of),
            repeats=REPEATS,
        )
        same = agree(m.value, value) and m.n == n
        verdict = (
            f"agree ({_fmt(value)}, n={n if n is not None else '—'})"
            if same
            else f"MISMATCH: engine {_fmt(m.value)} n={m.n}, hand-written {_fmt(value)} n={n}"
        )
        row = Row(shape, assumption, engine, hand, verdict, same, by_cpu)
        rows.append(row)
        flag = "" if row.ratio <= target else "!"
        print(
            f"{shape.metric:<17} {shape.label[:56]:<56} {row.figures()} {flag:<1}  {verdict}",
            flush=True,
        )
    return rows


def recheck(rows: list[Row], plan: Any, as_of: dt.datetime, target: float) -> None:
    """Time the tests above the target again; each keeps its best time of all the turns."""
    from insights.metrics import measure

    slow = [row for row in rows if row.ratio > target]
    if not slow:
        return
    print()
    print(f"above the target, timed again (best of {REPEATS + RECHECK_REPEATS} in all):")
    for row in slow:
        (engine, _), (hand, _) = best_of_each(
            partial(measure, row.assumption, plan.pk, as_of),
            partial(hand_measure, row.shape, plan.pk, as_of),
            repeats=RECHECK_REPEATS,
        )
        row.engine.add(engine.wall, engine.cpu)
        row.hand.add(hand.wall, hand.cpu)
        flag = "" if row.ratio <= target else "!"
        print(
            f"  {row.shape.metric:<17} {row.shape.label[:56]:<56} {row.figures()} {flag}",
            flush=True,
        )


def summarise(rows: list[Row], target: float) -> None:
    print()
    judged = "CPU" if rows and rows[0].by_cpu else "wall"
    print(f"per metric, the worst ratio ({judged} time; target ≤ {target}x):")
    for metric in HAND:
        mine = [row for row in rows if row.shape.metric == metric]
        if not mine:
            continue
        worst = max(mine, key=lambda row: row.ratio)
        engine, hand = (
            (worst.engine.cpu, worst.hand.cpu)
            if worst.by_cpu
            else (worst.engine.wall, worst.hand.wall)
        )
        print(
            f"  {metric:<17} {worst.ratio:>5.2f}x  {met(worst.ratio <= target):<8} "
            f"{engine * 1000:>6.1f} vs {hand * 1000:.1f} ms "
            f"({len(mine)} tests; worst: {worst.shape.label})"
        )
    for what in ("wall", "cpu") if judged == "CPU" else ("wall",):
        engine_s = sum(getattr(row.engine, what) for row in rows)
        hand_s = sum(getattr(row.hand, what) for row in rows)
        print(
            f"  all {len(rows)} tests  {engine_s / hand_s:>5.2f}x  "
            f"{engine_s:.2f}s engine vs {hand_s:.2f}s hand-written, summed ({what} time)"
        )
    print()


def time_retests(plan: Any) -> float:
    """The whole plan re-tested, as a schedule does: first every verdict is new, then none;
    where the time goes; the better of the two wall times."""
    from insights.services import retests

    note_drift = retests.note_drift
    spent: list[float] = []

    def timed_note_drift(*args: Any, **kwargs: Any) -> None:
        started = time.perf_counter()
        try:
            note_drift(*args, **kwargs)
        finally:
            spent.append(time.perf_counter() - started)

    best = math.inf
    retests.note_drift = timed_note_drift  # type: ignore[assignment]
    try:
        for what in ("first re-test (every verdict new)", "again (no verdict changes)"):
            spent.clear()
            cpu, started = time.thread_time(), time.perf_counter()
            runs = retests.retest_plan(plan)
            seconds, cpu = time.perf_counter() - started, time.thread_time() - cpu
            best = min(best, seconds)
            statuses: dict[str, int] = {}
            for run in runs:
                statuses[run.status] = statuses.get(run.status, 0) + 1
            metrics_s = sum(run.duration_ms for run in runs) / 1000
            print(
                f"retest_plan: {seconds:.2f}s for {len(runs)} assumptions "
                f"({seconds / len(runs) * 1000:.0f} ms each, {cpu:.2f}s CPU): {what}"
            )
            print(
                f"  of which   metrics {metrics_s:.2f}s, histories (computed where missing, "
                f"else looked up) {sum(spent):.2f}s, the rest (runs, verdicts, activity, "
                f"commits) {seconds - metrics_s - sum(spent):.2f}s"
            )
    finally:
        retests.note_drift = note_drift  # type: ignore[assignment]
    print(f"  statuses:  {json.dumps(statuses)}")
    return best


def report_values(rows: list[Row]) -> int:
    mismatches = sum(not row.same for row in rows)
    if mismatches:
        print(
            f"MISMATCH: on {mismatches} test(s) the engine and the hand-written SQL disagree; "
            "see the rows above"
        )
        return 1
    print("values:      the engine and the hand-written SQL agree on every test")
    return 0


def _fmt(value: float | None) -> str:
    if value is None:
        return "none"
    return f"{value:,.4f}" if abs(value) < 1000 else f"{value:,.2f}"


def met(ok: bool) -> str:
    return "met" if ok else "NOT met"
