"""Plotly figures as data: the page embeds them with json_script and static/js/charts.js draws
them, so a strict Content-Security-Policy holds (no inline script)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from planning.models import PROPORTION_METRICS, Assumption, AssumptionStatus

from .models import AssumptionRun

STATUS_COLOURS = {
    AssumptionStatus.HOLDS: "#1f7a4d",
    AssumptionStatus.AT_RISK: "#c98a00",
    AssumptionStatus.BROKEN: "#b42318",
    AssumptionStatus.INSUFFICIENT_DATA: "#8a93a6",
    AssumptionStatus.ERROR: "#7a2e8e",
    AssumptionStatus.UNTESTED: "#c5ccd8",
}
FONT = {"family": "-apple-system, Segoe UI, Roboto, Helvetica, Arial, sans-serif", "size": 13}


# What every figure's layout starts from, on the assumption pages and the Customers page alike.
LAYOUT: dict[str, Any] = {
    "font": FONT,
    "margin": {"l": 60, "r": 20, "t": 20, "b": 50},
    "paper_bgcolor": "#ffffff",
    "plot_bgcolor": "#ffffff",
    "showlegend": True,
    "legend": {"orientation": "h", "y": -0.2},
}


def layout(*defaults: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A figure's layout: LAYOUT, then a page's own `defaults`, then the figure's `extra`.
    Its axes make room for their tick labels (`automargin`): on a phone Plotly angles a
    category axis's labels, and the last one must not run off the chart."""
    merged = LAYOUT.copy()
    for more in defaults:
        merged.update(more)
    merged.update(extra)
    for axis in ("xaxis", "yaxis"):
        merged[axis] = {"automargin": True, **merged.get(axis, {})}
    return merged


def _data_time(moment: dt.datetime | str) -> str:
    """A moment on a chart's time axis, in UTC without an offset (Plotly reads no offsets)."""
    if isinstance(moment, str):
        moment = dt.datetime.fromisoformat(moment)
    return moment.astimezone(dt.UTC).replace(tzinfo=None).isoformat(timespec="seconds")


def history_figure(
    assumption: Assumption,
    points: list[dict[str, Any]],
    runs: list[AssumptionRun],
    drift: dict | None,
) -> dict[str, Any]:
    """The test through data time (DOMAIN §10): the observed value at the end of every period,
    its 95% interval as a band, the threshold(s) as lines, each point coloured by its status,
    the re-test runs marked where their data ended, and the drift shaded from when it began."""
    points = [p for p in points if p["observed"] is not None]
    x = [_data_time(p["as_of"]) for p in points]
    percent = assumption.metric in PROPORTION_METRICS
    value_format = ":.1%" if percent else ":,.2f"
    traces: list[dict[str, Any]] = []
    banded = [p for p in points if p["ci_low"] is not None]
    if banded:
        bx = [_data_time(p["as_of"]) for p in banded]
        traces.append(
            {
                "type": "scatter",
                "x": bx,
                "y": [p["ci_high"] for p in banded],
                "mode": "lines",
                "line": {"width": 0},
                "hoverinfo": "skip",
                "showlegend": False,
            }
        )
        traces.append(
            {
                "type": "scatter",
                "x": bx,
                "y": [p["ci_low"] for p in banded],
                "mode": "lines",
                "line": {"width": 0},
                "fill": "tonexty",
                "fillcolor": "rgba(47,91,211,0.15)",
                "name": "95% interval",
                "hoverinfo": "skip",
            }
        )
    traces.append(
        {
            "type": "scatter",
            "x": x,
            "y": [p["observed"] for p in points],
            "mode": "lines+markers",
            "name": "Observed at the end of each period",
            "line": {"color": "#2f5bd3", "width": 2},
            "marker": {
                "size": 9,
                "color": [STATUS_COLOURS[AssumptionStatus(p["status"])] for p in points],
                "line": {"color": "#ffffff", "width": 1},
            },
            "text": [AssumptionStatus(p["status"]).label for p in points],
            "hovertemplate": "Data to %{x|%d %b %Y}<br>%{y"
            + value_format
            + "}<br>%{text}<extra></extra>",
        }
    )
    measured = sorted(
        (r for r in runs if r.observed is not None and r.as_of is not None),
        key=lambda r: r.created_at,
    )
    if measured:
        traces.append(
            {
                "type": "scatter",
                "x": [_data_time(r.as_of) for r in measured if r.as_of],
                "y": [r.observed for r in measured],
                "mode": "markers",
                "name": "Re-test runs",
                "marker": {
                    "symbol": "diamond-open",
                    "size": 13,
                    "color": "#1d2433",
                    "line": {"width": 2},
                },
                "text": [f"{r.created_at:%d %b %Y %H:%M}" for r in measured],
                "hovertemplate": "Re-test of %{text}<br>data to %{x|%d %b %Y}<br>%{y"
                + value_format
                + "}<extra></extra>",
            }
        )
    span = sorted(x + [_data_time(r.as_of) for r in measured if r.as_of])
    thresholds = assumption.thresholds
    lines = thresholds if isinstance(thresholds, list) else [thresholds]
    for value in [v for v in lines if v is not None]:
        traces.append(
            {
                "type": "scatter",
                "x": [span[0], span[-1]] if span else [],
                "y": [value, value],
                "mode": "lines",
                "name": f"Threshold {assumption.format_value(value)}",
                "line": {"color": "#1d2433", "dash": "dash", "width": 1.5},
                "hoverinfo": "skip",
            }
        )
    shapes, annotations = [], []
    if drift and span:
        since = f"{drift['since']}T00:00:00"
        shapes.append(
            {
                "type": "rect",
                "xref": "x",
                "yref": "paper",
                "x0": since,
                "x1": span[-1],
                "y0": 0,
                "y1": 1,
                "fillcolor": "rgba(201,138,0,0.12)",
                "line": {"width": 0},
                "layer": "below",
            }
        )
        annotations.append(
            {
                "x": since,
                "xref": "x",
                "y": 1,
                "yref": "paper",
                "yanchor": "bottom",
                "xanchor": "left",
                "text": "Drifting " + ("↘" if drift.get("direction") == "down" else "↗"),
                "showarrow": False,
                "font": {"color": "#8a5a00"},
            }
        )
    yaxis: dict[str, Any] = {
        "title": {"text": assumption.get_metric_display()},
        "gridcolor": "#eef0f4",
        "zeroline": False,
    }
    if percent:
        yaxis["tickformat"] = ".0%"
    xaxis = {"gridcolor": "#eef0f4", "type": "date", "title": {"text": "Customer data up to"}}
    return {
        "data": traces,
        "layout": layout(
            yaxis=yaxis,
            xaxis=xaxis,
            height=380,
            shapes=shapes,
            annotations=annotations,
            # Below the axis title, not over it.
            legend={"orientation": "h", "y": -0.32},
            margin={"l": 60, "r": 20, "t": 24, "b": 90},
        ),
    }


def history_summary(
    assumption: Assumption, points: list[dict[str, Any]], drift: dict | None
) -> str:
    """The chart's text alternative."""
    measured = [p for p in points if p["observed"] is not None]
    if not measured:
        return "There is no customer data for this test yet, so it has no history."
    first, last = measured[0], measured[-1]
    fmt = assumption.format_value
    text = (
        f"{len(measured)} points of data time from {_day(first['as_of'])} to "
        f"{_day(last['as_of'])}: {fmt(first['observed'])} at first, {fmt(last['observed'])} "
        f"with the latest data ({AssumptionStatus(last['status']).label.lower()}), against a "
        f"target {assumption.target_display}."
    )
    if drift:
        text += f" {drift['message']}"
    return text


def _day(moment: str) -> str:
    return f"{dt.datetime.fromisoformat(moment):%-d %b %Y}"


def assumption_map_figure(assumptions: list[Assumption]) -> dict[str, Any]:
    """Importance × evidence, one dot per assumption coloured by status: the assumption map.
    Top left (important, little evidence) is where to look first."""
    traces = []
    for status in AssumptionStatus:
        group = [a for a in assumptions if a.status == status]
        if not group:
            continue
        # A little jitter keeps assumptions with equal scores apart.
        offsets = [((i % 5) - 2) * 0.06 for i in range(len(group))]
        traces.append(
            {
                "type": "scatter",
                "mode": "markers",
                "name": status.label,
                "x": [a.evidence + o for a, o in zip(group, offsets, strict=True)],
                "y": [a.importance + o for a, o in zip(group, offsets[::-1], strict=True)],
                "text": [a.statement for a in group],
                "hovertemplate": "%{text}<extra>" + status.label + "</extra>",
                "marker": {
                    "size": 14,
                    "color": STATUS_COLOURS[status],
                    "line": {"color": "#ffffff", "width": 1},
                },
            }
        )
    axis = {"range": [0.5, 5.5], "dtick": 1, "gridcolor": "#eef0f4", "zeroline": False}
    shapes = [
        {
            "type": "line",
            "x0": 3,
            "x1": 3,
            "y0": 0.5,
            "y1": 5.5,
            "line": {"color": "#c5ccd8", "dash": "dot"},
        },
        {
            "type": "line",
            "x0": 0.5,
            "x1": 5.5,
            "y0": 3,
            "y1": 3,
            "line": {"color": "#c5ccd8", "dash": "dot"},
        },
    ]
    annotations = [
        {
            "x": 1.2,
            "y": 5.4,
            "text": "Test first",
            "showarrow": False,
            "font": {"color": "#b42318"},
        },
        {"x": 4.8, "y": 5.4, "text": "Known", "showarrow": False, "font": {"color": "#6b7489"}},
    ]
    return {
        "data": traces,
        "layout": layout(
            xaxis={**axis, "title": {"text": "Evidence (how much we know)"}},
            yaxis={**axis, "title": {"text": "Importance"}},
            shapes=shapes,
            annotations=annotations,
            height=460,
        ),
    }


def assumption_map_summary(assumptions: list[Assumption]) -> str:
    urgent = [a for a in assumptions if a.importance >= 4 and a.evidence <= 2]
    counts: dict[str, int] = {}
    for a in assumptions:
        counts[a.get_status_display().lower()] = counts.get(a.get_status_display().lower(), 0) + 1
    parts = ", ".join(f"{n} {label}" for label, n in counts.items())
    total = "1 assumption" if len(assumptions) == 1 else f"{len(assumptions)} assumptions"
    if not urgent:
        return f"{total} ({parts}). None is important with little evidence."
    if len(urgent) == 1:
        return f"{total} ({parts}). 1 is important with little evidence: test it first."
    return f"{total} ({parts}). {len(urgent)} are important with little evidence: test those first."
