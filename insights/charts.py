"""Plotly figures as data: the page embeds them with json_script and static/js/charts.js draws
them, so a strict Content-Security-Policy holds (no inline script)."""

from __future__ import annotations

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


def _layout(**extra: Any) -> dict[str, Any]:
    return {
        "font": FONT,
        "margin": {"l": 60, "r": 20, "t": 20, "b": 50},
        "paper_bgcolor": "#ffffff",
        "plot_bgcolor": "#ffffff",
        "showlegend": True,
        "legend": {"orientation": "h", "y": -0.2},
        **extra,
    }


def history_figure(assumption: Assumption, runs: list[AssumptionRun]) -> dict[str, Any]:
    """Observed value over runs, the 95% interval as a band, the threshold(s) as lines."""
    runs = [r for r in sorted(runs, key=lambda r: r.created_at) if r.observed is not None]
    x = [r.created_at.isoformat() for r in runs]
    percent = assumption.metric in PROPORTION_METRICS
    traces: list[dict[str, Any]] = []
    banded = [r for r in runs if r.ci_low is not None]
    if banded:
        bx = [r.created_at.isoformat() for r in banded]
        traces.append(
            {
                "type": "scatter",
                "x": bx,
                "y": [r.ci_high for r in banded],
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
                "y": [r.ci_low for r in banded],
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
            "y": [r.observed for r in runs],
            "mode": "lines+markers",
            "name": "Observed",
            "line": {"color": "#2f5bd3", "width": 2},
            "marker": {
                "size": 10,
                "color": [STATUS_COLOURS[AssumptionStatus(r.status)] for r in runs],
                "line": {"color": "#ffffff", "width": 1},
            },
            "text": [r.get_status_display() for r in runs],
            "hovertemplate": "%{x|%d %b %Y %H:%M}<br>%{y"
            + (":.1%" if percent else ":,.2f")
            + "}<br>%{text}<extra></extra>",
        }
    )
    thresholds = assumption.thresholds
    lines = thresholds if isinstance(thresholds, list) else [thresholds]
    for value in [v for v in lines if v is not None]:
        traces.append(
            {
                "type": "scatter",
                "x": [x[0], x[-1]] if x else [],
                "y": [value, value],
                "mode": "lines",
                "name": f"Threshold {assumption.format_value(value)}",
                "line": {"color": "#1d2433", "dash": "dash", "width": 1.5},
            }
        )
    yaxis: dict[str, Any] = {
        "title": {"text": assumption.get_metric_display()},
        "gridcolor": "#eef0f4",
        "zeroline": False,
    }
    if percent:
        yaxis["tickformat"] = ".0%"
    return {
        "data": traces,
        "layout": _layout(yaxis=yaxis, xaxis={"gridcolor": "#eef0f4"}, height=340),
    }


def history_summary(assumption: Assumption, runs: list[AssumptionRun]) -> str:
    """The chart's text alternative."""
    runs = [r for r in sorted(runs, key=lambda r: r.created_at) if r.observed is not None]
    if not runs:
        return "No run has measured this assumption yet."
    first, last = runs[0], runs[-1]
    return (
        f"{len(runs)} runs from {first.created_at:%d %b %Y} to {last.created_at:%d %b %Y}: "
        f"observed {assumption.format_value(first.observed)} at first, "
        f"{assumption.format_value(last.observed)} at the latest run "
        f"({last.get_status_display().lower()}), against a target {assumption.target_display}."
    )


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
        "layout": _layout(
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
    return (
        f"{len(assumptions)} assumptions ({parts}). {len(urgent)} are important with little "
        "evidence: test those first."
    )
