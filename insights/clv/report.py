"""The lifetime-value report (DOMAIN §9): both models fitted on the plan's customers, then each
customer's expected purchases, P(alive) and spend over the horizon, summed up and per segment,
with the holdout test when as_of is pinned before the data ends.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

from insights.metrics import Scope, latest_event_at

from . import DEFAULT_EVENT_TYPE, DEFAULT_HORIZON_WEEKS, bgnbd, gamma_gamma
from .bgnbd import BgNbd
from .gamma_gamma import GammaGamma
from .summaries import Summaries, customer_summaries, purchase_days_after


def fit_models(summaries: Summaries) -> tuple[BgNbd | None, GammaGamma | None]:
    """Both models fitted on these customers: BG/NBD on all of them, Gamma-Gamma on those with
    repeat days of a positive mean value (the model has no room for zero or negative spend).
    None where nobody qualifies."""
    frequency = bgnbd.fit(summaries.x, summaries.t_x, summaries.T) if len(summaries) else None
    spenders = _spenders(summaries)
    spend = (
        gamma_gamma.fit(summaries.valued[spenders], summaries.m[spenders])
        if spenders.any()
        else None
    )
    return frequency, spend


def _spenders(summaries: Summaries) -> NDArray[np.bool_]:
    with np.errstate(invalid="ignore"):
        return (summaries.valued > 0) & (summaries.m > 0)


def customer_lifetime_value(
    plan_id: int,
    *,
    as_of: dt.datetime | None = None,
    horizon_weeks: float = DEFAULT_HORIZON_WEEKS,
    event_type: str = DEFAULT_EVENT_TYPE,
    segment: str = "",
    channel: str = "",
) -> dict[str, Any]:
    """The §9 report: both fits, each customer's expected purchases over the horizon, P(alive)
    and expected spend per purchase, summed up (and per segment); with a pinned as_of before
    the data ends, also the holdout test under the key `holdout` (else None)."""
    event_type = event_type.lower()
    latest = latest_event_at(plan_id)
    pinned = as_of
    as_of = as_of or latest
    report: dict[str, Any] = {
        "as_of": as_of.astimezone(dt.UTC).isoformat() if as_of else None,
        "event_type": event_type,
        "customers": 0,
        "repeat_customers": 0,
        "bgnbd": None,
        "gamma_gamma": None,
        "horizon_weeks": horizon_weeks,
        **_averaged(0, 0.0, 0.0, 0.0, 0.0),
        "segments": [],
        "holdout": None,
    }
    if as_of is None:
        return report
    scope = Scope(plan_id=plan_id, as_of=as_of, segment=segment, channel=channel)
    summaries = customer_summaries(scope, event_type)
    frequency, spend = fit_models(summaries)
    report["customers"] = len(summaries)
    report["repeat_customers"] = int(np.count_nonzero(summaries.x > 0))
    if frequency is None:
        return report
    report["bgnbd"] = frequency.as_json()
    report["gamma_gamma"] = spend.as_json() if spend else None

    purchases = frequency.expected_purchases(horizon_weeks, summaries.x, summaries.t_x, summaries.T)
    alive = frequency.p_alive(summaries.x, summaries.t_x, summaries.T)
    per_purchase = _expected_spend(spend, summaries)
    # Sums over each segment's customers, under the one fit; the whole is their sum.
    names, which = np.unique(np.asarray(summaries.segments, dtype=object), return_inverse=True)
    sums = np.array(
        [
            np.bincount(which.reshape(-1), weights=values, minlength=len(names))
            for values in (
                np.ones(len(summaries)),
                (summaries.x > 0).astype(np.float64),
                purchases,
                alive,
                per_purchase,
                purchases * per_purchase,
            )
        ]
    )
    report.update(_averaged(*sums.sum(axis=1)[[0, 2, 3, 4, 5]]))
    report["segments"] = [
        {
            "segment": str(name),
            "customers": int(sums[0, i]),
            "repeat_customers": int(sums[1, i]),
            **_averaged(*sums[[0, 2, 3, 4, 5], i]),
        }
        for i, name in enumerate(names)
    ]
    if pinned is not None and latest is not None and pinned < latest:
        report["holdout"] = _holdout(scope, event_type, frequency, summaries, latest)
    return report


def _expected_spend(spend: GammaGamma | None, summaries: Summaries) -> NDArray[np.float64]:
    """Each customer's expected spend per purchase; customers without repeat days of positive
    mean value (x = 0 among them) get the population mean p·γ/(q − 1). NaN without a fit."""
    if spend is None:
        return np.full(len(summaries), np.nan)
    spenders = _spenders(summaries)
    return spend.expected_spend(
        np.where(spenders, summaries.valued, 0.0), np.where(spenders, summaries.m, 0.0)
    )


def _averaged(
    customers: float, purchases: float, alive: float, per_purchase: float, clv: float
) -> dict[str, float | None]:
    """The aggregates from their sums over the customers: expected purchases and CLV summed,
    P(alive) and expected spend per purchase averaged; spend and CLV None where not known (no
    Gamma-Gamma fit: the sums are NaN), means None without customers."""
    known = math.isfinite(per_purchase)
    return {
        "expected_purchases": float(purchases),
        "mean_p_alive": float(alive / customers) if customers else None,
        "expected_spend_per_purchase": (
            float(per_purchase / customers) if customers and known else None
        ),
        "clv": float(clv) if known else None,
    }


def _holdout(
    scope: Scope,
    event_type: str,
    frequency: BgNbd,
    summaries: Summaries,
    until: dt.datetime,
) -> dict[str, Any] | None:
    """The model's own test: for the fitted customers, predicted against actual purchase days
    week by week after as_of, up to the data's end. Week k holds the k-th seven days after the
    day of as_of (the day T ends on); the last week is partial when the data ends inside it,
    and its prediction covers only the days it has."""
    as_of_day = scope.as_of.astimezone(dt.UTC).date()
    span = (until.astimezone(dt.UTC).date() - as_of_day).days
    if span <= 0:
        return None
    weeks = math.ceil(span / 7)
    ends = [min(7 * k, span) for k in range(1, weeks + 1)]
    cumulative = frequency.total_expected_purchases(
        [end / 7 for end in ends], summaries.x, summaries.t_x, summaries.T
    )
    predicted = np.diff(cumulative, prepend=0.0)
    actual_by_day = purchase_days_after(scope, event_type, until)
    rows = []
    for k, end in enumerate(ends):
        start = 7 * k
        days = [as_of_day + dt.timedelta(days=d) for d in range(start + 1, end + 1)]
        rows.append(
            {
                "week": k + 1,
                "start": days[0].isoformat(),
                "end": days[-1].isoformat(),
                "partial": end - start < 7,
                "predicted": float(predicted[k]),
                "actual": sum(actual_by_day.get(d, 0) for d in days),
            }
        )
    return {
        "through": until.astimezone(dt.UTC).isoformat(),
        "predicted": float(cumulative[-1]),
        "actual": sum(row["actual"] for row in rows),
        "weeks": rows,
    }
