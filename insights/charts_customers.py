"""The Customers page's figures as data (DOMAIN §8, §9): the page embeds each with json_script
and static/js/charts.js draws it, so the strict Content-Security-Policy holds. Each figure has
a table or a sentence beside it on the page for those who cannot see it."""

from __future__ import annotations

import datetime as dt
from typing import Any

from .charts import FONT, layout
from .services.customer_panels import Loyalty, SideFunnel, period_label
from .services.customers import PeriodFigures

BLUE = "#2f5bd3"
PALETTE = ["#2f5bd3", "#1f7a4d", "#c98a00", "#7a2e8e", "#b42318", "#0e7490"]
COMPOSITION = {
    "new": ("New", "#2f5bd3"),
    "returning": ("Returning", "#1f7a4d"),
    "resurrecting": ("Resurrecting", "#c98a00"),
    "dormant": ("Dormant (left)", "#b8bfcc"),
}
GRID = "#eef0f4"


# The page's figures are a little tighter than the assumption pages', their legend flush left.
PAGE_LAYOUT: dict[str, Any] = {
    "margin": {"l": 56, "r": 16, "t": 16, "b": 48},
    "height": 320,
    "legend": {"orientation": "h", "y": -0.22, "x": 0},
    "hoverlabel": {"font": FONT},
}


def _x(start: Any) -> str:
    return start.isoformat()


def _moment(at: dt.datetime) -> str:
    """A moment on a time axis, in UTC without an offset (Plotly reads no offsets)."""
    return at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")


def composition_figure(periods: list[PeriodFigures], period: str) -> dict[str, Any]:
    """New, returning and resurrecting customers stacked above the axis per period, the
    dormant ones (active the period before, not in this one) below it."""
    x = [_x(p.start) for p in periods]
    labels = [period_label(p.start, period) + (" (so far)" if p.partial else "") for p in periods]
    traces = []
    for key, (name, colour) in COMPOSITION.items():
        sign = -1 if key == "dormant" else 1
        traces.append(
            {
                "type": "bar",
                "name": name,
                "x": x,
                "y": [sign * getattr(p, key) for p in periods],
                "customdata": [
                    [getattr(p, key), label] for p, label in zip(periods, labels, strict=True)
                ],
                "marker": {
                    "color": colour,
                    # The partial period is drawn lighter: it is not over.
                    "opacity": [0.45 if p.partial else 1 for p in periods],
                },
                "hovertemplate": f"%{{customdata[1]}}<br>{name}: %{{customdata[0]:,}}<extra></extra>",
            }
        )
    return {
        "data": traces,
        "layout": layout(
            PAGE_LAYOUT,
            barmode="relative",
            xaxis={
                "type": "date",
                "gridcolor": GRID,
                "tickformat": "%b %Y" if period != "week" else "%-d %b",
            },
            yaxis={"title": {"text": "Customers"}, "gridcolor": GRID, "zerolinecolor": "#8a93a6"},
        ),
    }


def loyalty_figure(series: Loyalty, period: str) -> dict[str, Any]:
    """One loyalty metric at the end of every period, its 95% interval as a band; the point at
    an as_of inside a period is drawn open (its period is not over)."""
    points = [p for p in series.points if p.measurement.value is not None]
    share = series.test.metric in ("repeat_rate", "churn_rate")
    x = [_moment(p.at) for p in points]
    traces: list[dict[str, Any]] = []
    banded = [p for p in points if p.measurement.ci_low is not None]
    if banded:
        bx = [_moment(p.at) for p in banded]
        traces += [
            {
                "type": "scatter",
                "x": bx,
                "y": [p.measurement.ci_high for p in banded],
                "mode": "lines",
                "line": {"width": 0},
                "hoverinfo": "skip",
                "showlegend": False,
            },
            {
                "type": "scatter",
                "x": bx,
                "y": [p.measurement.ci_low for p in banded],
                "mode": "lines",
                "line": {"width": 0},
                "fill": "tonexty",
                "fillcolor": "rgba(47,91,211,0.15)",
                "name": "95% interval",
                "hoverinfo": "skip",
            },
        ]
    text = [
        f"{period_label(p.start, period)}{' (so far)' if p.partial else ''}: "
        f"{series.fmt(p.measurement.value)}"
        + (
            f" ({series.fmt(p.measurement.ci_low)} – {series.fmt(p.measurement.ci_high)})"
            if p.measurement.ci_low is not None
            else ""
        )
        + (f", n = {p.measurement.n:,}" if p.measurement.n is not None else "")
        for p in points
    ]
    traces.append(
        {
            "type": "scatter",
            "mode": "lines+markers",
            "name": series.label,
            "x": x,
            "y": [p.measurement.value for p in points],
            "text": text,
            "hovertemplate": "%{text}<extra></extra>",
            "line": {"color": BLUE, "width": 2},
            "marker": {
                "size": 7,
                "color": ["#ffffff" if p.partial else BLUE for p in points],
                "line": {"color": BLUE, "width": 2},
            },
        }
    )
    yaxis: dict[str, Any] = {"gridcolor": GRID, "zeroline": False}
    xaxis: dict[str, Any] = {"type": "date", "gridcolor": GRID, "nticks": 5, "tickangle": 0}
    if len(points) > 1:
        # A little room on both sides: a first date tick on the plot's edge would sit on the
        # lowest value's tick label.
        pad = (points[-1].at - points[0].at) * 0.04
        xaxis["range"] = [_moment(points[0].at - pad), _moment(points[-1].at + pad)]
    if share:
        yaxis["tickformat"] = ".0%"
        yaxis["rangemode"] = "tozero"
    return {
        "data": traces,
        "layout": layout(
            PAGE_LAYOUT,
            height=240,
            showlegend=False,
            margin={"l": 48, "r": 12, "t": 8, "b": 32},
            xaxis=xaxis,
            yaxis=yaxis,
        ),
    }


def funnel_figure(funnels: list[SideFunnel]) -> dict[str, Any]:
    """Each step's share of the entrants with its 95% interval, one group of bars per step and
    one colour per segment (or channel), side by side."""
    traces = []
    for i, side in enumerate(funnels):
        steps = side.funnel.steps
        shares = [s.reached.share for s in steps]
        traces.append(
            {
                "type": "bar",
                "name": f"{side.label} ({side.funnel.entrants:,} entrants)",
                "x": [s.stage for s in steps],
                "y": shares,
                "marker": {"color": PALETTE[i % len(PALETTE)]},
                "error_y": {
                    "type": "data",
                    "symmetric": False,
                    "array": [
                        (s.reached.ci_high - s.reached.share)
                        if s.reached.share is not None and s.reached.ci_high is not None
                        else 0
                        for s in steps
                    ],
                    "arrayminus": [
                        (s.reached.share - s.reached.ci_low)
                        if s.reached.share is not None and s.reached.ci_low is not None
                        else 0
                        for s in steps
                    ],
                    "color": "#1d2433",
                    "thickness": 1,
                    "width": 3,
                },
                "customdata": [
                    [
                        s.reached.customers,
                        s.reached.ci_low if s.reached.ci_low is not None else 0,
                        s.reached.ci_high if s.reached.ci_high is not None else 0,
                    ]
                    for s in steps
                ],
                "hovertemplate": (
                    f"{side.label}<br>%{{x}}: %{{y:.1%}} of entrants (%{{customdata[0]:,}})"
                    "<br>95% interval %{customdata[1]:.1%} – %{customdata[2]:.1%}<extra></extra>"
                ),
            }
        )
    return {
        "data": traces,
        "layout": layout(
            PAGE_LAYOUT,
            height=340,
            barmode="group",
            xaxis={"gridcolor": GRID},
            yaxis={
                "tickformat": ".0%",
                "range": [0, 1.05],
                "gridcolor": GRID,
                "title": {"text": "Share of entrants"},
            },
        ),
    }


def p_alive_figure(histogram: list[dict[str, Any]]) -> dict[str, Any]:
    """How many customers have each tenth of P(alive): a bar per tenth on a 0–100 axis, whose
    few ticks (every 20) stay apart on a phone, where ten "0–10" labels ran into each other."""
    return {
        "data": [
            {
                "type": "bar",
                "x": [round(50 * (row["low"] + row["high"]), 4) for row in histogram],
                "width": [round(90 * (row["high"] - row["low"]), 4) for row in histogram],
                "y": [row["customers"] for row in histogram],
                "customdata": [
                    f"{100 * row['low']:.0f}–{100 * row['high']:.0f}" for row in histogram
                ],
                "marker": {"color": BLUE},
                "hovertemplate": "P(alive) %{customdata}%: %{y:,} customers<extra></extra>",
                "name": "Customers",
            }
        ],
        "layout": layout(
            PAGE_LAYOUT,
            height=260,
            showlegend=False,
            margin={"l": 56, "r": 12, "t": 8, "b": 48},
            xaxis={
                "title": {"text": "P(alive), %"},
                "range": [0, 100],
                "dtick": 20,
                "gridcolor": GRID,
                "zeroline": False,
            },
            yaxis={"title": {"text": "Customers"}, "gridcolor": GRID},
        ),
    }


def segment_value_figure(segments: list[dict[str, Any]]) -> dict[str, Any]:
    """Each segment's expected value over the horizon per customer."""
    rows = [s for s in segments if s.get("clv") is not None and s["customers"]]
    return {
        "data": [
            {
                "type": "bar",
                "x": [s["segment"] or "(none)" for s in rows],
                "y": [s["clv"] / s["customers"] for s in rows],
                "customdata": [[s["customers"], s["clv"]] for s in rows],
                "marker": {"color": "#1f7a4d"},
                "hovertemplate": (
                    "%{x}: %{y:,.2f} per customer<br>%{customdata[0]:,} customers, "
                    "%{customdata[1]:,.0f} in all<extra></extra>"
                ),
                "name": "Value per customer",
            }
        ],
        "layout": layout(
            PAGE_LAYOUT,
            height=260,
            showlegend=False,
            margin={"l": 64, "r": 12, "t": 8, "b": 40},
            yaxis={"title": {"text": "Expected value per customer"}, "gridcolor": GRID},
        ),
    }


def holdout_figure(holdout: dict[str, Any]) -> dict[str, Any]:
    """The model's own test: purchases it predicted after as_of against those that happened,
    week by week."""
    weeks = holdout["weeks"]
    x = [w["start"] for w in weeks]
    text = [
        f"Week {w['week']} ({w['start']} – {w['end']}){' partial' if w['partial'] else ''}"
        for w in weeks
    ]
    return {
        "data": [
            {
                "type": "scatter",
                "mode": "lines+markers",
                "name": "Actual",
                "x": x,
                "y": [w["actual"] for w in weeks],
                "text": text,
                "line": {"color": "#1d2433", "width": 2},
                "hovertemplate": "%{text}<br>Actual: %{y:,}<extra></extra>",
            },
            {
                "type": "scatter",
                "mode": "lines",
                "name": "Predicted by the model",
                "x": x,
                "y": [w["predicted"] for w in weeks],
                "text": text,
                "line": {"color": BLUE, "width": 2, "dash": "dash"},
                "hovertemplate": "%{text}<br>Predicted: %{y:,.1f}<extra></extra>",
            },
        ],
        "layout": layout(
            PAGE_LAYOUT,
            height=280,
            xaxis={"type": "date", "gridcolor": GRID},
            yaxis={
                "title": {"text": "Purchase days per week"},
                "gridcolor": GRID,
                "rangemode": "tozero",
            },
        ),
    }
