"""Assumptions through time (DOMAIN §10): each test evaluated at the end of every period.

A history is computed in one statement per test (`metrics.measure_series`), in the background
when a test is saved or changed, after an import and at each re-test, and kept per *key*: the
test, the plan's period and data version, and the event map where the metric reads it. A key
that was computed is never computed again; a new key is a new history, so an assumption's page
shows the last one while the next is computed.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
import time
from functools import partial
from typing import Any

from django.core.cache import cache
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.utils import timezone

from lifecycle.models import EventMapping
from planning import jobs
from planning.models import Assumption, Metric, Plan

from ..drift import Drift, detect
from ..metrics import MetricError, first_event_at, latest_event_at, measure_series, verdict
from ..models import AssumptionHistory
from ..periods import last_moment, next_period_start, period_start
from .sources import plan_engine

log = logging.getLogger(__name__)

# --- periods (DOMAIN §8) ------------------------------------------------------------------------


def history_ends(first: dt.datetime, as_of: dt.datetime, period: str) -> list[dt.datetime]:
    """The moments of a history: the last moment of every complete period from the one holding
    `first`, then as_of itself (one point, not two, when as_of is a period's last moment)."""
    ends = []
    start = period_start(first, period)
    while (end := last_moment(start, period)) < as_of:
        ends.append(end)
        start = next_period_start(start, period)
    ends.append(as_of)
    return ends


# --- keys ---------------------------------------------------------------------------------------


def history_key(assumption: Assumption, plan: Plan) -> str:
    """What a history depends on, hashed: the test, the plan's period and data version, and the
    event types mapped to the stage a stage_reach test reads."""
    basis: dict[str, Any] = {
        "test": _keyed_test(assumption.test_definition()),
        "period": plan.period,
        "data": plan.data_version,
    }
    if assumption.metric == Metric.STAGE_REACH:
        stage = str((assumption.params or {}).get("stage", ""))
        basis["map"] = sorted(
            EventMapping.objects.filter(plan=plan, stage__name__iexact=stage).values_list(
                "event_type", flat=True
            )
        )
    raw = json.dumps(basis, sort_keys=True, default=str).encode()
    return hashlib.sha256(raw).hexdigest()


def _keyed_test(test: dict[str, Any] | None) -> dict[str, Any] | None:
    """A test as its history is keyed: 60 as typed and 60.0 as stored are one threshold."""
    if not test:
        return test
    threshold = test["threshold"]
    return {
        **test,
        "threshold": (
            [float(v) for v in threshold] if isinstance(threshold, list) else float(threshold)
        ),
    }


def _same_test(stored: dict[str, Any] | None, test: dict[str, Any] | None) -> bool:
    """Whether a history's stored test (read back from JSON) is this one."""
    as_json = partial(json.dumps, sort_keys=True, default=str)
    return as_json(_keyed_test(stored)) == as_json(_keyed_test(test))


def is_new_test(assumption: Assumption) -> bool:
    """Whether the assumption's test is none of those its histories were computed for: one
    query (a history of older data is deleted once the newer one is computed: few rows)."""
    test = assumption.test_definition()
    stored = AssumptionHistory.objects.filter(assumption=assumption).values_list("test", flat=True)
    return not any(_same_test(other, test) for other in stored)


def period_changed(plan: Plan) -> bool:
    """Whether the plan's latest history was drawn per another period than the plan's now."""
    latest = (
        AssumptionHistory.objects.filter(plan=plan)
        .order_by("-created_at", "-id")
        .values_list("period", flat=True)
        .first()
    )
    return latest is not None and latest != plan.period


# --- computing ----------------------------------------------------------------------------------


def _point(assumption: Assumption, at: dt.datetime, m: Any) -> dict[str, Any]:
    return {
        "as_of": at.astimezone(dt.UTC).isoformat(),
        "observed": m.value,
        "n": m.n,
        "ci_low": m.ci_low,
        "ci_high": m.ci_high,
        "status": verdict(assumption, m),
    }


def evaluate_history(assumption: Assumption, plan: Plan) -> tuple[list[dict], dt.datetime | None]:
    """The points of an assumption's history as of now's data, and the as_of they end at."""
    as_of = latest_event_at(plan.pk)
    if as_of is None:
        return [], None
    first = first_event_at(plan.pk, assumption.segment, assumption.channel)
    if first is None:
        return [], as_of
    ends = history_ends(first, as_of, plan.period)
    measurements = measure_series(assumption, plan.pk, ends)
    return [_point(assumption, at, m) for at, m in zip(ends, measurements, strict=True)], as_of


def find_drift(assumption: Assumption, points: list[dict], period: str) -> Drift | None:
    if not assumption.has_test or assumption.threshold is None:
        return None
    return detect(
        points,
        comparator=assumption.comparator,
        low=assumption.threshold,
        high=assumption.threshold_high,
        label=assumption.get_metric_display(),
        fmt=assumption.format_value,
        period=period,
    )


def current_history(assumption: Assumption, plan: Plan | None = None) -> AssumptionHistory | None:
    """The history of the assumption's test on today's data, if one was started."""
    plan = plan or Plan.objects.get(pk=assumption.choice.plan_id)
    return AssumptionHistory.objects.filter(
        assumption=assumption, key=history_key(assumption, plan)
    ).first()


def latest_ready_history(assumption: Assumption) -> AssumptionHistory | None:
    return (
        AssumptionHistory.objects.filter(
            assumption=assumption, status=AssumptionHistory.Status.READY
        )
        .order_by("-computed_at", "-id")
        .first()
    )


def start_history(
    assumption: Assumption, plan: Plan | None = None
) -> tuple[AssumptionHistory, bool]:
    """The history row for the assumption's current key: (it, True) when it must be computed."""
    plan = plan or Plan.objects.get(pk=assumption.choice.plan_id)
    key = history_key(assumption, plan)
    try:
        with transaction.atomic():
            history, created = AssumptionHistory.objects.get_or_create(
                assumption=assumption,
                key=key,
                defaults={
                    "plan": plan,
                    "period": plan.period,
                    "data_version": plan.data_version,
                    "test": assumption.test_definition() or {},
                },
            )
    except IntegrityError:  # created at the same moment by another worker
        history, created = AssumptionHistory.objects.get(assumption=assumption, key=key), False
    return history, created or history.status != AssumptionHistory.Status.READY


def compute_history(assumption: Assumption, *, plan: Plan | None = None) -> AssumptionHistory:
    """The assumption's history for its current key, computed now unless it already is.
    Its drift becomes the assumption's (the early warning on the board)."""
    plan = plan or Plan.objects.get(pk=assumption.choice.plan_id)
    history, needed = start_history(assumption, plan)
    if not needed:
        return history
    started = time.perf_counter()
    # Inside a caller's transaction, a savepoint; otherwise autocommit reads: on SQLite an
    # atomic block takes the write lock at once and would hold it for the whole computation,
    # making every member's save wait behind a background history.
    savepoint = transaction.atomic() if connection.in_atomic_block else contextlib.nullcontext()
    try:
        # Where the plan's events live: a Spark source's failure is a MetricError too.
        with savepoint, plan_engine(plan):
            points, as_of = evaluate_history(assumption, plan)
    except MetricError as error:
        history.status, history.message, history.points = (
            AssumptionHistory.Status.FAILED,
            str(error),
            [],
        )
        history.drift = None
    except DatabaseError:
        log.exception("history of assumption %s failed", assumption.pk)
        raise
    else:
        drift = find_drift(assumption, points, plan.period)
        history.status = AssumptionHistory.Status.READY
        history.points, history.as_of, history.message = points, as_of, ""
        history.drift = drift.as_json() if drift else None
    history.computed_at = timezone.now()
    history.duration_ms = round((time.perf_counter() - started) * 1000)
    history.save()
    # Data versions only grow: a history of an older one can never be current again.
    AssumptionHistory.objects.filter(
        assumption=assumption, data_version__lt=history.data_version
    ).delete()
    _set_drift(assumption, plan, history)
    return history


def _set_drift(assumption: Assumption, plan: Plan, history: AssumptionHistory) -> None:
    """The assumption shows the drift of its current history (and none while it has none)."""
    if history.key != history_key(assumption, plan):
        return
    drift = history.drift or {}
    since = dt.date.fromisoformat(drift["since"]) if drift.get("since") else None
    fields = {
        "drift_since": since,
        "drift_direction": drift.get("direction", ""),
        "drift_message": drift.get("message", ""),
    }
    if all(getattr(assumption, name) == value for name, value in fields.items()):
        return
    Assumption.objects.filter(pk=assumption.pk).update(**fields)
    for name, value in fields.items():
        setattr(assumption, name, value)


def tested_assumptions(plan: Plan):
    """The plan's assumptions that carry a test, in plan order."""
    return (
        Assumption.objects.filter(choice__plan=plan)
        .exclude(metric="")
        .select_related("choice__plan")
        .order_by("choice__position", "choice_id", "position", "id")
    )


def compute_plan_history(plan: Plan) -> list[AssumptionHistory]:
    """Every tested assumption's history, in plan order (each computed only if missing)."""
    with plan_engine(plan):  # one session on the plan's cluster for them all
        return [compute_history(assumption, plan=plan) for assumption in tested_assumptions(plan)]


def plan_history_json(plan: Plan) -> list[dict[str, Any]]:
    """`manage.py history SLUG --json` (DOMAIN §10), computing what is missing first."""
    assumptions = list(tested_assumptions(plan))
    with plan_engine(plan):
        histories = [compute_history(assumption, plan=plan) for assumption in assumptions]
    return [
        {
            "statement": assumption.statement,
            "metric": assumption.metric,
            "points": history.points,
            "drift": history.drift,
        }
        for assumption, history in zip(assumptions, histories, strict=True)
    ]


# By name: `insights.tasks` calls these services, so importing it here would make a cycle.
PLAN_HISTORY_TASK = "insights.tasks.compute_plan_history"
HISTORY_TASK = "insights.tasks.compute_history"


def request_plan_history(plan_id: int) -> None:
    """Compute the plan's histories in the background, once the current transaction commits."""
    transaction.on_commit(partial(jobs.send, PLAN_HISTORY_TASK, [plan_id], {}))


ASKED_SECONDS = 120


def request_history(assumption: Assumption, *, once: bool = False) -> None:
    """Compute the assumption's history in the background, once the current transaction
    commits. The worker finds out whether its current key needs it: no query here, so saving
    an assumption costs what it did. `once`: not again for ASKED_SECONDS (pages that ask while
    they wait for it)."""
    if not assumption.has_test:
        return
    if once and not cache.add(f"history-asked:{assumption.pk}", True, ASKED_SECONDS):
        return
    transaction.on_commit(partial(jobs.send, HISTORY_TASK, [assumption.pk], {}))
