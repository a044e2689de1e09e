"""The Customers page's lifetime-value panel (DOMAIN §9): computed in the background
(services.clv_jobs), drawn here once it is ready."""

from __future__ import annotations

from typing import Any

from planning.models import Plan

from .. import charts_customers as charts
from ..services import clv_jobs
from .customer_filters import Settings


def value_context(plan: Plan, settings: Settings) -> dict[str, Any]:
    state = clv_jobs.customer_value(plan, settings.value_request)
    context: dict[str, Any] = {"value": state, "settings": settings}
    report = state.report
    if state.status == clv_jobs.Status.READY and report and report.get("bgnbd"):
        segments = sorted(
            (
                {
                    **s,
                    "per_customer": s["clv"] / s["customers"]
                    if s.get("clv") is not None and s["customers"]
                    else None,
                }
                for s in report["segments"]
            ),
            key=lambda s: -(s["per_customer"] or 0),
        )
        histogram = state.p_alive_histogram or []
        context.update(
            p_alive_summary=_p_alive_summary(histogram),
            holdout_summary=_holdout_summary(report.get("holdout")),
            value_segments=segments,
            value_segments_figure=charts.segment_value_figure(segments),
            p_alive_figure=charts.p_alive_figure(state.p_alive_histogram or []),
            holdout_figure=charts.holdout_figure(report["holdout"])
            if report.get("holdout")
            else None,
            value_per_customer=(report["clv"] / report["customers"])
            if report.get("clv") is not None and report["customers"]
            else None,
        )
    return context


def _p_alive_summary(histogram: list[dict[str, Any]]) -> str:
    total = sum(row["customers"] for row in histogram)
    if not total:
        return ""
    likely = sum(row["customers"] for row in histogram if row["low"] >= 0.5 - 1e-9)
    gone = sum(row["customers"] for row in histogram if row["high"] <= 0.2 + 1e-9)
    return (
        f"{likely:,} of {total:,} customers ({100 * likely / total:.0f}%) are more likely than "
        f"not still customers; {gone:,} ({100 * gone / total:.0f}%) have probably left "
        "(P(alive) under 20%)."
    )


def _holdout_summary(holdout: dict[str, Any] | None) -> str:
    if not holdout:
        return ""
    predicted, actual = holdout["predicted"], holdout["actual"]
    weeks = len(holdout["weeks"])
    gap = (predicted - actual) / actual if actual else None
    text = (
        f"Over the {weeks} week{'s' if weeks != 1 else ''} after the pinned date, the model "
        f"predicted {predicted:,.0f} purchase days and customers made {actual:,}"
    )
    if gap is not None:
        text += f": {abs(100 * gap):.0f}% {'over' if gap > 0 else 'under'} the actual"
    return text + "."
