"""The Customers page (DOMAIN §8, §9): the life cycle in numbers and what customers are worth,
with its filters in the URL (customer_filters), and "Make this an assumption" behind every figure
that is a §5 test. Imports and the event map are its sub-pages (insights.views.imports)."""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import urlencode

from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from planning.http import AuthenticatedHttpRequest
from planning.models import Assumption, Membership, Metric, Period, Plan
from planning.views.access import get_plan_for_user, require_editor

from .. import charts_customers as charts
from ..clv import DEFAULT_HORIZON_WEEKS
from ..metrics import MetricError, latest_event_at
from ..services.customer_panels import (
    SIDE_BY_SIDE,
    FilterOptions,
    Loyalty,
    LoyaltyPoint,
    SideFunnel,
    board_strip,
    figure_test,
    filter_options,
    loyalty,
    period_label,
    period_noun,
    remembered,
    side_by_side,
    stage_strip,
    strip_context,
    test_query,
)
from ..services.customers import (
    DEFAULT_EVENT_TYPE,
    DEFAULT_WINDOW_DAYS,
    CustomerFigures,
    CustomersError,
    compute_customers,
    stage_types,
)
from ..services.sources import SPARK_FRESH_SECONDS, plan_engine, read_again, spark_record
from .customer_filters import CustomersFilter, Settings
from .customer_value import value_context

# An assumption made from a figure of one period measures the same over this many days.
PERIOD_DAYS: dict[str, int] = {Period.MONTH: 30, Period.WEEK: 7}

# --- the page ----------------------------------------------------------------------------------


@require_GET
@login_required
def customers(request: AuthenticatedHttpRequest, slug: str) -> HttpResponse:
    plan, membership = get_plan_for_user(request.user, slug)
    try:
        with plan_engine(plan):  # on the plan's Spark cluster, if its events live there
            response = _customers_page(request, plan, membership)
    except MetricError as error:  # the cluster: say why, in words, with the way to its settings
        response = render(
            request,
            "insights/customers_unreadable.html",
            {"plan": plan, "membership": membership, "message": str(error)},
            status=503,
        )
    if request.htmx and request.GET.get("part") == "figures":
        response.status_code = 200  # htmx swaps only a success: the figures say what is wrong
    return response


@require_GET
@login_required
def board_stage_strip(request: AuthenticatedHttpRequest, slug: str) -> HttpResponse:
    """The board's stage strip alone: asked for by the board of a plan whose events live on a
    Spark cluster, once the board is shown (its figures are then kept a while)."""
    plan, _ = get_plan_for_user(request.user, slug)
    return render(
        request, "insights/_stage_strip.html", strip_context(plan, board_strip(plan, wait=True))
    )


def _customers_page(
    request: AuthenticatedHttpRequest, plan: Plan, membership: Membership
) -> HttpResponse:
    options = filter_options(plan)
    form = CustomersFilter(request.GET, plan=plan, options=options)
    shown = request.GET.copy()
    shown.pop("part", None)
    page_url = reverse("insights:customers", args=[plan.slug])
    context: dict[str, Any] = {
        "plan": plan,
        "membership": membership,
        "form": form,
        "query": shown.urlencode(),
        "current": _current(request.GET, plan),
        "page_url": f"{page_url}?{shown.urlencode()}" if shown else page_url,
        "value_url": f"{page_url}?{urlencode([*shown.lists(), ('part', ['value'])], doseq=True)}",
    }
    if not form.is_valid():
        return render(request, "insights/customers.html", context, status=400)
    settings = form.settings
    spark = spark_record(plan)
    context.update(spark=spark, spark_minutes=SPARK_FRESH_SECONDS // 60)
    if spark and not (request.htmx and request.GET.get("part") in ("figures", "value")):
        # A cluster answers in seconds, not milliseconds: the page comes at once, and its
        # figures as soon as the cluster has read them (kept a while: `remembered`).
        query = urlencode([*shown.lists(), ("part", ["figures"])], doseq=True)
        context.update(figures_pending=True, figures_url=f"{page_url}?{query}")
        return render(request, "insights/customers.html", context)
    if settings.as_of is not None and (
        latest := remembered(plan, "latest", (), lambda: latest_event_at(plan.pk))
    ):
        # Later than the data: empty periods up to it, each one more point to compute.
        if settings.as_of.date() > latest.astimezone(dt.UTC).date():
            form.add_error(
                "as_of",
                f"The data ends on {latest:%-d %b %Y}: choose that day or an earlier one, or "
                "leave it empty for the latest data.",
            )
            return render(request, "insights/customers.html", context, status=400)
    if request.htmx and request.GET.get("part") == "value":
        context.update(value_context(plan, settings))
        return render(request, "insights/customers.html#value", context)
    if spark:  # when these figures were read from the cluster (kept with them)
        context["read_at"] = remembered(plan, "read-at", settings, timezone.now)
    try:
        context.update(_figures_context(plan, settings, options, membership.can_edit, plan.slug))
    except CustomersError as error:
        form.add_error(None, str(error))
        return render(request, "insights/customers.html", context, status=400)
    if context["figures"].as_of is not None:
        context.update(value_context(plan, settings))
    return render(request, "insights/customers.html", context)


def _current(query: Any, plan: Plan) -> dict[str, str]:
    """What the filter inputs show: as typed (also when it was wrong), else the default."""
    defaults = {
        "period": plan.period,
        "as_of": "",
        "segment": "",
        "channel": "",
        "event_type": DEFAULT_EVENT_TYPE,
        "window": str(DEFAULT_WINDOW_DAYS),
        "entry_from": "",
        "entry_to": "",
        "by": "channel",
        "horizon": str(DEFAULT_HORIZON_WEEKS),
    }
    return {name: query.get(name) or default for name, default in defaults.items()}


def _assumption_link(slug: str, test: Assumption) -> str:
    url = reverse("insights:customers_assumption", args=[slug])
    return f"{url}?{urlencode(test_query(test))}"


def _figures_context(
    plan: Plan, settings: Settings, options: FilterOptions, can_edit: bool, slug: str
) -> dict[str, Any]:
    figures = remembered(
        plan,
        "customers",
        settings,
        lambda: compute_customers(
            plan,
            as_of=settings.as_of,
            period=settings.period,
            segment=settings.segment,
            channel=settings.channel,
            event_type=settings.event_type,
            window_days=settings.window,
            entry_from=settings.entry_from,
            entry_to=settings.entry_to,
        ),
    )
    context: dict[str, Any] = {"figures": figures, "settings": settings}
    if figures.as_of is None or not figures.periods:
        return context
    stages = stage_types(plan.pk)
    strip = stage_strip(figures.periods, stages, settings.period)
    days = PERIOD_DAYS[settings.period]
    links = {}
    if can_edit:
        for tile in strip.tiles:
            if tile.mapped and tile.reached is not None and tile.reached.share is not None:
                test = figure_test(
                    Metric.STAGE_REACH,
                    {"stage": tile.stage},
                    segment=settings.segment,
                    channel=settings.channel,
                    window_days=days,
                    value=tile.reached.share,
                )
                links[tile.stage] = _assumption_link(slug, test)
    complete = [p for p in figures.periods if not p.partial]
    active_link = ""
    if can_edit and complete:
        active_link = _assumption_link(
            slug,
            figure_test(
                Metric.ACTIVE_CUSTOMERS,
                {},
                segment=settings.segment,
                channel=settings.channel,
                window_days=days,
                value=complete[-1].active,
            ),
        )
    as_of = figures.as_of
    loyal = remembered(
        plan,
        "loyalty",
        (as_of, settings.period, settings.event_type, settings.segment, settings.channel),
        lambda: loyalty(
            plan,
            stages,
            as_of=as_of,
            period=settings.period,
            event_type=settings.event_type,
            segment=settings.segment,
            channel=settings.channel,
        ),
    )
    context.update(
        strip=strip,
        strip_rows=[{"tile": tile, "link": links.get(tile.stage, "")} for tile in strip.tiles],
        composition_summary=_composition_summary(figures, settings.period),
        partial_label=period_label(figures.periods[-1].start, settings.period)
        if figures.periods[-1].partial
        else "",
        cohort_offsets=range(
            1, max((len(c.retention) for c in figures.cohorts[-COHORT_ROWS:]), default=0) + 1
        ),
        cohorts_left_out=max(len(figures.cohorts) - COHORT_ROWS, 0),
        period_days=days,
        noun=period_noun(settings.period),
        period_rows=[_period_row(p, settings.period) for p in reversed(figures.periods)],
        composition_figure=charts.composition_figure(figures.periods, settings.period),
        active_link=active_link,
        cohort_rows=_cohort_rows(figures, settings.period),
        loyalty=[
            {
                "series": series,
                "figure": charts.loyalty_figure(series, settings.period),
                "figure_id": f"loyalty-{series.key}-figure",
                "latest": _loyalty_cell(series, series.latest) if series.latest else None,
                "link": _assumption_link(slug, series.test)
                if can_edit and series.latest and series.latest.measurement.value is not None
                else "",
            }
            for series in loyal
        ],
        loyalty_rows=_loyalty_rows(loyal, settings.period),
        **_funnel_context(plan, settings, options, figures, stages),
    )
    return context


def _composition_summary(figures: CustomerFigures, period: str) -> str:
    complete = [p for p in figures.periods if not p.partial]
    if not complete:
        return "No complete period yet."
    last = complete[-1]
    return (
        f"{len(figures.periods)} {period_noun(period)}s from "
        f"{period_label(figures.periods[0].start, period)}. In {period_label(last.start, period)}: "
        f"{last.active:,} active customers, {last.new:,} new, {last.returning:,} returning, "
        f"{last.resurrecting:,} resurrecting; {last.dormant:,} went dormant."
    )


def _period_row(p: Any, period: str) -> dict[str, Any]:
    return {
        "label": period_label(p.start, period),
        "start": p.start,
        "partial": p.partial,
        "active": p.active,
        "new": p.new,
        "returning": p.returning,
        "resurrecting": p.resurrecting,
        "dormant": p.dormant,
    }


# The heat table shows the latest cohorts: two years of months, or about half a year of weeks
# (a full triangle of 78 weeks would be 3,000 cells).
COHORT_ROWS = 24


def _cohort_rows(figures: CustomerFigures, period: str) -> list[dict[str, Any]]:
    shown = figures.cohorts[-COHORT_ROWS:]
    width = max((len(c.retention) for c in shown), default=0)
    rows = []
    for cohort in reversed(shown):
        cells = [
            {
                "k": cell.k,
                "share": cell.retained.share,
                "customers": cell.retained.customers,
                "ci_low": cell.retained.ci_low,
                "ci_high": cell.retained.ci_high,
                "partial": cell.partial,
                "heat": round(100 * (cell.retained.share or 0) / HEAT_TOP)
                if cell.retained.share is not None
                else 0,
            }
            for cell in cohort.retention
        ]
        rows.append(
            {
                "label": period_label(cohort.start, period),
                "size": cohort.size,
                "cells": cells,
                "blank": range(width - len(cells)),
            }
        )
    return rows


# The share at which a retention cell is fully coloured: retention past the first period is
# rarely above 40%, and a scale to 100% would leave every cell pale.
HEAT_TOP = 0.4


def _loyalty_cell(series: Loyalty, point: LoyaltyPoint) -> dict[str, Any]:
    m = point.measurement
    return {
        "value": series.fmt(m.value),
        "raw": m.value,
        "interval": f"{series.fmt(m.ci_low)} – {series.fmt(m.ci_high)}"
        if m.ci_low is not None
        else "",
        "n": m.n,
    }


def _loyalty_rows(loyal: list[Loyalty], period: str) -> list[dict[str, Any]]:
    """One row per period end, newest first, a cell per metric (they share their moments)."""
    if not loyal:
        return []
    rows = []
    for i in reversed(range(len(loyal[0].points))):
        point = loyal[0].points[i]
        rows.append(
            {
                "label": period_label(point.start, period) + (" (so far)" if point.partial else ""),
                "at": point.at,
                "cells": [
                    _loyalty_cell(series, series.points[i]) for series in loyal if series.points
                ],
            }
        )
    return rows


def _funnel_context(
    plan: Plan,
    settings: Settings,
    options: FilterOptions,
    figures: CustomerFigures,
    stages: Any,
) -> dict[str, Any]:
    assert figures.funnel is not None and figures.as_of is not None
    kind = "segments" if settings.by == "segment" else "channels"
    pinned = settings.segment if settings.by == "segment" else settings.channel
    values = [] if pinned else options.largest(kind, SIDE_BY_SIDE)
    everyone = SideFunnel(label=pinned or "All customers", value=pinned, funnel=figures.funnel)
    as_of, steps = figures.as_of, [step.stage for step in figures.funnel.steps]
    others = remembered(
        plan,
        "side-by-side",
        (settings, as_of, steps, values),
        lambda: side_by_side(
            plan,
            stages,
            steps,
            by=settings.by,
            values=values,
            as_of=as_of,
            period=settings.period,
            segment=settings.segment,
            channel=settings.channel,
            window_days=settings.window,
            entry_from=settings.entry_from,
            entry_to=settings.entry_to,
        ),
    )
    # A segment (channel) without entrants has no funnel to draw: named, not drawn.
    sides = [everyone, *(side for side in others if side.funnel.entrants)]
    rows = [
        {"stage": step.stage, "cells": [side.funnel.steps[i] for side in sides]}
        for i, step in enumerate(figures.funnel.steps)
    ]
    return {
        "funnels": sides,
        "funnel_rows": rows,
        "funnel_sentence": _funnel_sentence(figures, settings),
        "funnel_summary": _funnel_summary(sides),
        "entry_input": "date" if settings.period == Period.WEEK else "month",
        "funnel_figure": charts.funnel_figure(sides),
        "funnel_more": max(len(getattr(options, kind)) - SIDE_BY_SIDE, 0) if not pinned else 0,
        "funnel_kind": settings.by,
        "funnel_empty": [side.label for side in others if not side.funnel.entrants],
    }


def _funnel_sentence(figures: CustomerFigures, settings: Settings) -> str:
    funnel = figures.funnel
    assert funnel is not None
    if not funnel.steps:
        return ""
    first = funnel.steps[0].stage
    noun = period_noun(settings.period)
    if funnel.entry_from and funnel.entry_to:
        entry = (
            f"from the {noun} of {period_label(funnel.entry_from, settings.period)} to that of "
            f"{period_label(funnel.entry_to, settings.period)}"
        )
    elif funnel.entry_from:
        entry = f"from the {noun} of {period_label(funnel.entry_from, settings.period)} on"
    elif funnel.entry_to:
        entry = f"up to the {noun} of {period_label(funnel.entry_to, settings.period)}"
    else:
        entry = "at any time"
    return (
        f"Entrants are customers whose first {first} event came {entry}, at least "
        f"{funnel.window_days} days before the latest data; each reaches a step with an event "
        f"of its stage, after the step before, within {funnel.window_days} days of entering."
    )


def _funnel_summary(sides: list[SideFunnel]) -> str:
    everyone = sides[0].funnel
    if not everyone.steps or not everyone.entrants:
        return "No entrants to follow."
    last = everyone.steps[-1]
    worst = min(
        everyone.steps[1:],
        key=lambda s: s.of_previous.share if s.of_previous.share is not None else 1,
        default=None,
    )
    text = (
        f"Of {everyone.entrants:,} entrants, {last.reached.customers:,} "
        f"({100 * (last.reached.share or 0):.1f}%) reach {last.stage}."
    )
    if worst is not None and worst.of_previous.share is not None:
        text += (
            f" The leakiest step is {worst.stage}: {100 * worst.of_previous.share:.1f}% of those "
            "who reached the step before reach it."
        )
    return text


# --- "Make this an assumption": which choice it supports ---------------------------------------

# What the picker passes on to the new-assumption form, and nothing else.
PASSED_ON = ("statement", *Assumption.TEST_FIELDS)


@require_POST
@login_required
def customers_read_again(request: AuthenticatedHttpRequest, slug: str) -> HttpResponse:
    """Read a Spark plan's figures from its cluster again at once ("Read again now"), not in up
    to SPARK_FRESH_SECONDS: its table has changed. Members who edit may ask."""
    plan, membership = get_plan_for_user(request.user, slug)
    require_editor(membership)
    read_again(plan)
    query = request.POST.get("query", "")
    url = reverse("insights:customers", args=[plan.slug])
    return redirect(f"{url}?{query}" if query else url)


@require_GET
@login_required
def customers_assumption(request: AuthenticatedHttpRequest, slug: str) -> HttpResponse:
    """Pick the strategic choice an assumption made from a figure supports, then go on to the
    board's new-assumption form, filled in from the figure's test."""
    plan, membership = get_plan_for_user(request.user, slug)
    require_editor(membership)
    query: dict[str, str] = {
        name: str(value)
        for name, value in request.GET.items()
        if name in PASSED_ON or name.startswith("param_")
    }
    choices = list(plan.choices.order_by("position", "id"))
    chosen = request.GET.get("choice", "")
    error = ""
    if chosen:
        match = next((c for c in choices if str(c.pk) == chosen), None)
        if match is not None:
            url = reverse("planning:assumption_new", args=[plan.slug, match.pk])
            return redirect(f"{url}?{urlencode(query)}")
        error = "Choose one of the plan's strategic choices."
    preview = Assumption(
        metric=query.get("metric", ""),
        params={k[6:]: v for k, v in query.items() if k.startswith("param_")},
        comparator=query.get("comparator", ""),
    )
    return render(
        request,
        "insights/customers_assumption.html",
        {
            "plan": plan,
            "membership": membership,
            "choices": choices,
            "query": query,
            "statement": query.get("statement", ""),
            "metric_label": preview.get_metric_display() if preview.metric else "",
            "error": error,
            "back": reverse("insights:customers", args=[plan.slug]),
        },
        status=400 if error else 200,
    )
