"""Customer lifetime value in the background (DOMAIN §9): the models are fitted by a Celery job,
once per plan, data version and choice of filters, and the Customers page shows the result (or
the fit's progress) from a cache.

The result lives in Django's cache (Redis, or files under var/ in the embedded mode), keyed by
the plan, its `data_version` and the filters, not in a table of its own: a report is derived
data that the events can always give again, a new import bumps the data version (so an old
report is never read again and simply expires), and no migration or clean-up job is needed. An
evicted report costs one more fit (well under a second on 10,000 customers). The state of a
key goes queued → running → ready (or failed); a queued or running state that is older than
STALE (a lost job, a dead worker) is asked for again by the next page that needs it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import time
from dataclasses import dataclass
from functools import partial
from typing import Any

from django.core.cache import cache
from django.db import DatabaseError, transaction
from django.utils import timezone

from planning import jobs
from planning.models import Plan

from ..clv import DEFAULT_EVENT_TYPE, DEFAULT_HORIZON_WEEKS
from ..metrics import MetricError, Scope
from .customer_panels import cache_scope
from .sources import plan_engine

log = logging.getLogger(__name__)

# By name: `insights.tasks` calls this module, so importing it here would make a cycle.
TASK = "insights.tasks.compute_customer_value"

READY_SECONDS = 30 * 24 * 3600  # a key's data version never changes: keep it while it is read
PENDING_SECONDS = 3600
STALE = dt.timedelta(minutes=5)  # the fit takes seconds: a job this old was lost
SLOW = dt.timedelta(minutes=1)  # the page says the workers may be busy or stopped
PALIVE_BINS = 10


class Status:
    QUEUED = "queued"
    RUNNING = "running"
    READY = "ready"
    FAILED = "failed"


@dataclass(frozen=True)
class ValueRequest:
    """What a lifetime-value report is asked for: the §9 report's own arguments."""

    as_of: dt.datetime | None = None  # None: as of the plan's latest event
    horizon_weeks: int = DEFAULT_HORIZON_WEEKS
    event_type: str = DEFAULT_EVENT_TYPE
    segment: str = ""
    channel: str = ""

    def as_json(self) -> dict[str, Any]:
        return {
            "as_of": self.as_of.astimezone(dt.UTC).isoformat() if self.as_of else None,
            "horizon_weeks": self.horizon_weeks,
            "event_type": self.event_type.strip().lower(),
            "segment": self.segment,
            "channel": self.channel,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ValueRequest:
        as_of = data.get("as_of")
        return cls(
            as_of=dt.datetime.fromisoformat(as_of) if as_of else None,
            horizon_weeks=int(data.get("horizon_weeks", DEFAULT_HORIZON_WEEKS)),
            event_type=str(data.get("event_type") or DEFAULT_EVENT_TYPE),
            segment=str(data.get("segment") or ""),
            channel=str(data.get("channel") or ""),
        )


@dataclass(frozen=True)
class ValueState:
    """A report as the page shows it: its status, and the report once it is ready."""

    status: str
    requested_at: dt.datetime | None = None
    started_at: dt.datetime | None = None
    step: str = ""
    report: dict[str, Any] | None = None
    p_alive_histogram: list[dict[str, Any]] | None = None
    message: str = ""
    duration_ms: int | None = None

    @property
    def pending(self) -> bool:
        return self.status in (Status.QUEUED, Status.RUNNING)

    @property
    def waited(self) -> dt.timedelta:
        since = self.started_at or self.requested_at
        return timezone.now() - since if since else dt.timedelta(0)

    @property
    def stalled(self) -> bool:
        return self.pending and self.waited > STALE

    @property
    def slow(self) -> bool:
        return self.pending and self.waited > SLOW

    def as_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "requested_at": _iso(self.requested_at),
            "started_at": _iso(self.started_at),
            "step": self.step,
            "report": self.report,
            "p_alive_histogram": self.p_alive_histogram,
            "message": self.message,
            "duration_ms": self.duration_ms,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ValueState:
        return cls(
            status=data["status"],
            requested_at=_moment(data.get("requested_at")),
            started_at=_moment(data.get("started_at")),
            step=data.get("step") or "",
            report=data.get("report"),
            p_alive_histogram=data.get("p_alive_histogram"),
            message=data.get("message") or "",
            duration_ms=data.get("duration_ms"),
        )


def _iso(moment: dt.datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _moment(text: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(text) if text else None


def value_key(plan: Plan, request: ValueRequest) -> str:
    raw = json.dumps(request.as_json(), sort_keys=True).encode()
    return f"clv:{cache_scope(plan)}:{hashlib.sha256(raw).hexdigest()[:24]}"


def _store(key: str, state: ValueState) -> None:
    ttl = READY_SECONDS if state.status == Status.READY else PENDING_SECONDS
    cache.set(key, state.as_json(), ttl)


def _read(key: str) -> ValueState | None:
    data = cache.get(key)
    return ValueState.from_json(data) if isinstance(data, dict) else None


# --- asking -------------------------------------------------------------------------------------


def customer_value(plan: Plan, request: ValueRequest) -> ValueState:
    """The report for the plan's current data, or where its fit is: asks for the fit (once,
    however many people look) when nobody has, or when the job asked for was lost."""
    key = value_key(plan, request)
    state = _read(key)
    if state is not None and not state.stalled:
        return state
    queued = ValueState(Status.QUEUED, requested_at=timezone.now(), step="Waiting for a worker")
    if state is None:
        # Two pages at once: one of them adds the key and sends the job.
        if not cache.add(key, queued.as_json(), PENDING_SECONDS):
            return _read(key) or queued
    else:
        _store(key, queued)
    send_fit(plan.pk, plan.data_version, request)
    return queued


def send_fit(plan_id: int, data_version: int, request: ValueRequest) -> None:
    """Send the fit to the workers once the current transaction commits."""
    transaction.on_commit(partial(jobs.send, TASK, [plan_id, data_version, request.as_json()], {}))


def request_default_value(plan_id: int) -> None:
    """After an import: fit the page's default report at once, so it is ready when looked at."""
    plan = Plan.objects.filter(pk=plan_id).only("pk", "data_version", "created_at").first()
    if plan is not None:
        customer_value(plan, ValueRequest())


# --- fitting (the worker) -----------------------------------------------------------------------


def compute_customer_value(plan_id: int, data_version: int, request_json: dict[str, Any]) -> None:
    """Fit the report of this key unless it is ready or being fitted. Safe to run twice: a
    second delivery finds it ready (or running, and fresh) and does nothing."""
    from ..clv import customer_lifetime_value  # numpy and scipy: only where a fit runs

    request = ValueRequest.from_json(request_json)
    plan = Plan.objects.filter(pk=plan_id).select_related("data_source").first()
    if plan is None or plan.data_version != data_version:
        return  # deleted, or new data since: the page asks for the new version's report
    key = value_key(plan, request)
    state = _read(key)
    if state is not None and (
        state.status == Status.READY or (state.status == Status.RUNNING and not state.stalled)
    ):
        return
    requested = state.requested_at if state else timezone.now()
    started = timezone.now()
    _store(
        key,
        ValueState(
            Status.RUNNING, requested_at=requested, started_at=started, step="Fitting the model"
        ),
    )
    clock = time.perf_counter()
    try:
        # The per-customer summaries are read where the events live (a Spark cluster's answer is
        # one row per customer); the fit runs here.
        with plan_engine(plan):
            report = customer_lifetime_value(
                plan_id,
                as_of=request.as_of,
                horizon_weeks=request.horizon_weeks,
                event_type=request.event_type,
                segment=request.segment,
                channel=request.channel,
            )
            histogram = report.get("p_alive_histogram") or p_alive_histogram(
                plan_id, request, report
            )
    except MetricError as error:  # the plan's cluster could not be read: says why, in words
        _store(
            key,
            ValueState(
                Status.FAILED, requested_at=requested, started_at=started, message=str(error)
            ),
        )
        return
    except DatabaseError:
        # Transient (the task retries it): the next page asks again if it never comes back.
        log.exception("lifetime value of plan %s failed", plan_id)
        cache.delete(key)
        raise
    except Exception as error:  # a fit that fails says so (for an hour), not "fitting…" forever
        log.exception("lifetime value of plan %s could not be fitted", plan_id)
        _store(
            key,
            ValueState(
                Status.FAILED,
                requested_at=requested,
                started_at=started,
                message=f"The model could not be fitted to these customers ({error}).",
            ),
        )
        return
    _store(
        key,
        ValueState(
            Status.READY,
            requested_at=requested,
            started_at=started,
            report=report,
            p_alive_histogram=histogram,
            duration_ms=round((time.perf_counter() - clock) * 1000),
        ),
    )


def p_alive_histogram(
    plan_id: int, request: ValueRequest, report: dict[str, Any]
) -> list[dict[str, Any]]:
    """How many customers have each tenth of P(alive) at as_of, under the report's fit (the
    §9 report holds only its mean): one more read of the per-customer summaries, no refit."""
    import numpy as np

    from ..clv import BgNbd, customer_summaries

    fit = report.get("bgnbd")
    if not fit or not report.get("as_of"):
        return []
    scope = Scope(
        plan_id=plan_id,
        as_of=dt.datetime.fromisoformat(report["as_of"]),
        segment=request.segment,
        channel=request.channel,
    )
    summaries = customer_summaries(scope, report["event_type"])
    alive = BgNbd(**fit).p_alive(summaries.x, summaries.t_x, summaries.T)
    counts, edges = np.histogram(alive, bins=PALIVE_BINS, range=(0.0, 1.0))
    return [
        {"low": float(edges[i]), "high": float(edges[i + 1]), "customers": int(count)}
        for i, count in enumerate(counts)
    ]
