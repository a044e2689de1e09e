"""The metric engine (DOMAIN §5): one SQL statement per metric, run in the database.

Each metric is written once, in `engine`, as a series over moments; a re-test measures one
moment (`measure`), a history many (`measure_series`). A `Measurement` is a value, its sample
size and 95% interval; `verdict` turns it and the test's comparator into a status. SQL is
written once with the small dialect helpers of `sql`, so the same statements run on PostgreSQL,
on the SQLite default, and as Spark SQL where a customer's data lives (`spark.on_source`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from typing import Any

from django.core.exceptions import ValidationError

from planning.models import Assumption, AssumptionStatus, Metric, clean_metric_params

from . import engine
from .engine import MetricError, Scope
from .sql import EVENTS, days_before, fetchone, indexed, unindexed
from .stats import Measurement, mean_interval, nps_interval, wilson

__all__ = [
    "METRICS",
    "Measurement",
    "MetricError",
    "Scope",
    "active_customers",
    "churn_rate",
    "conversion_rate",
    "days_before",
    "latest_event_at",
    "mean_interval",
    "mean_value",
    "measure",
    "measure_series",
    "nps",
    "nps_interval",
    "repeat_rate",
    "stage_reach",
    "total_value",
    "verdict",
    "wilson",
]

Series = Callable[..., list[Measurement]]

METRICS: dict[str, Series] = {
    Metric.ACTIVE_CUSTOMERS: engine.active_customers,
    Metric.REPEAT_RATE: engine.repeat_rate,
    Metric.CONVERSION_RATE: engine.conversion_rate,
    Metric.CHURN_RATE: engine.churn_rate,
    Metric.STAGE_REACH: engine.stage_reach,
    Metric.MEAN_VALUE: engine.mean_value,
    Metric.TOTAL_VALUE: engine.total_value,
    Metric.NPS: engine.nps,
}


def _at_as_of(series: Series) -> Callable[..., Measurement]:
    """A metric as of its scope's as_of alone: the series at that one moment."""

    def point(scope: Scope, *args: Any, **kwargs: Any) -> Measurement:
        return series(scope, [scope.as_of], *args, **kwargs)[0]

    point.__name__ = series.__name__
    point.__doc__ = series.__doc__
    return point


active_customers = _at_as_of(engine.active_customers)
repeat_rate = _at_as_of(engine.repeat_rate)
conversion_rate = _at_as_of(engine.conversion_rate)
churn_rate = _at_as_of(engine.churn_rate)
stage_reach = _at_as_of(engine.stage_reach)
mean_value = _at_as_of(engine.mean_value)
total_value = _at_as_of(engine.total_value)
nps = _at_as_of(engine.nps)


def latest_event_at(plan_id: int) -> dt.datetime | None:
    """The default as_of: the moment of the plan's latest event, before any filter.

    A skip scan of the (plan, type, time) index: each event type's latest, a few index probes
    in all, where MAX() over the plan would read every event (there is no (plan, time) index:
    it would slow every import)."""
    return _skip_scan(plan_id, "MAX")


def first_event_at(plan_id: int, segment: str = "", channel: str = "") -> dt.datetime | None:
    """The moment of the plan's first event kept by the filters (where a history starts).

    Unfiltered, the same skip scan as `latest_event_at`; filtered, one scan of the plan."""
    if not segment and not channel:
        return _skip_scan(plan_id, "MIN")
    # SQLite would find the plan's events through the (plan, type, time) index and fetch each
    # from the table in the index's order; reading the table through is 9 times faster on the
    # demo plan (150 ms → 17 ms), 3 times with four more plans of its size beside it.
    where = [f"{unindexed('e.plan_id')} = %s"]
    params: list[Any] = [plan_id]
    for column, value in (("segment", segment), ("channel", channel)):
        if value:
            where.append(f"e.{column} = %s")
            params.append(value)
    (first,) = fetchone(
        f"SELECT MIN(e.occurred_at) FROM {EVENTS} e WHERE {' AND '.join(where)}", params
    )
    return _as_datetime(first)


def _skip_scan(plan_id: int, extreme: str) -> dt.datetime | None:
    if not indexed():
        (found,) = fetchone(
            f"SELECT {extreme}(e.occurred_at) FROM {EVENTS} e WHERE e.plan_id = %s", [plan_id]
        )
        return _as_datetime(found)
    (found,) = fetchone(
        f"""WITH RECURSIVE types (name) AS (
              SELECT MIN(event_type) FROM {EVENTS} WHERE plan_id = %s
              UNION ALL
              SELECT (SELECT MIN(e.event_type) FROM {EVENTS} e
                      WHERE e.plan_id = %s AND e.event_type > t.name)
              FROM types t WHERE t.name IS NOT NULL)
            SELECT {extreme}((SELECT {extreme}(e.occurred_at) FROM {EVENTS} e
                        WHERE e.plan_id = %s AND e.event_type = t.name))
            FROM types t WHERE t.name IS NOT NULL""",
        [plan_id, plan_id, plan_id],
    )
    return _as_datetime(found)


def _as_datetime(value: Any) -> dt.datetime | None:
    if isinstance(value, str):  # SQLite returns the stored text for MIN()/MAX() over a datetime
        return dt.datetime.fromisoformat(value).replace(tzinfo=dt.UTC)
    return value


def measure_series(
    assumption: Assumption, plan_id: int, ends: Sequence[dt.datetime]
) -> list[Measurement]:
    """The assumption's metric as of each moment of `ends` (ascending), in one statement."""
    scope = Scope(
        plan_id=plan_id,
        as_of=ends[-1],
        segment=assumption.segment,
        channel=assumption.channel,
        window_days=assumption.window_days,
    )
    compute = METRICS.get(assumption.metric)
    if compute is None:
        raise MetricError(f"“{assumption.metric}” is not a metric Outside-In knows.")
    try:
        # The same check as the test's form: names what is missing or stray, lower-cases event
        # types (DOMAIN §4) and fills defaults, whoever wrote the params.
        params = clean_metric_params(assumption.metric, assumption.params)
    except ValidationError as error:
        raise MetricError(
            f"The test's settings do not fit its metric: {error.messages[0]}"
        ) from None
    return compute(scope, list(ends), **params)


def measure(assumption: Assumption, plan_id: int, as_of: dt.datetime) -> Measurement:
    return measure_series(assumption, plan_id, [as_of])[0]


def verdict(assumption: Assumption, m: Measurement) -> str:
    """The status of a measurement against the test (DOMAIN §5, Confidence and status)."""
    if m.value is None or m.n == 0:
        return AssumptionStatus.INSUFFICIENT_DATA
    if m.n is not None:
        if m.n < assumption.min_sample:
            return AssumptionStatus.INSUFFICIENT_DATA
        if assumption.metric == Metric.MEAN_VALUE and m.n < 2:
            return AssumptionStatus.INSUFFICIENT_DATA
    low = m.ci_low if m.ci_low is not None else m.value
    high = m.ci_high if m.ci_high is not None else m.value
    threshold = assumption.threshold
    assert threshold is not None
    if assumption.comparator == ">=":
        holds, broken = low >= threshold, high < threshold
    elif assumption.comparator == "<=":
        holds, broken = high <= threshold, low > threshold
    else:
        top = assumption.threshold_high
        assert top is not None
        holds, broken = threshold <= low and high <= top, high < threshold or low > top
    if holds:
        return AssumptionStatus.HOLDS
    if broken:
        return AssumptionStatus.BROKEN
    return AssumptionStatus.AT_RISK
