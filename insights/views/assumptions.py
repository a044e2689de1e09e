"""An assumption's test through time: its history, "Re-test now" for one assumption or the
whole plan, a plan re-test's progress, the assumption map, and the preview of a test being
edited."""

from __future__ import annotations

import datetime as dt
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from planning.forms import AssumptionForm
from planning.http import AuthenticatedHttpRequest
from planning.jobs import enqueue
from planning.models import Assumption, AssumptionStatus, Plan
from planning.views.access import get_plan_for_user, require_editor

from .. import charts, tasks
from ..models import AssumptionRun, PlanRetest
from ..services import history as history_service
from ..services.digests import data_moved
from ..services.retests import (
    latest_data,
    outcome_now,
    request_assumption_retest,
    request_plan_retest,
    tested_assumptions,
)
from ..services.sources import plan_engine


def _get_assumption(plan_id: int, pk: int) -> Assumption:
    return get_object_or_404(
        Assumption.objects.select_related("choice", "owner__user"), choice__plan_id=plan_id, pk=pk
    )


@require_GET
@login_required
def assumption_detail(request: AuthenticatedHttpRequest, slug: str, pk: int) -> HttpResponse:
    plan, membership = get_plan_for_user(request.user, slug)
    assumption = _get_assumption(plan.pk, pk)
    runs = list(assumption.runs.select_related("assumption")[:200])
    since = _parse_since(request.GET.get("since"))
    waiting = since is not None and (
        assumption.last_run_at is None or assumption.last_run_at < since
    )
    # Workers that are stopped or swamped: say so, and stop asking every second.
    stalled = waiting and since is not None and timezone.now() - since > RETEST_PATIENCE
    context = {
        "plan": plan,
        "membership": membership,
        "assumption": assumption,
        "runs": runs,
        **_history_context(assumption, plan, runs),
        "waiting": waiting and not stalled,
        "stalled": stalled,
        "finished": bool(request.htmx) and since is not None and not waiting,
        "since": request.GET.get("since", ""),
    }
    template = "insights/assumption.html"
    if request.htmx:
        template += "#history" if request.GET.get("part") == "history" else "#verdict"
    return render(request, template, context)


def _history_context(assumption: Assumption, plan: Plan, runs: list[AssumptionRun]) -> dict:
    """The history drawn on the page: the one of the current test and data when it is ready,
    else the last one computed while the next is on its way (`history_pending`)."""
    if not assumption.has_test:
        return {"history": None, "history_pending": False}
    current = history_service.current_history(assumption, plan)
    if current is None:
        # Saved before histories existed, or its job was lost: ask again (no write here), once
        # for everyone looking at it in the next minutes.
        history_service.request_history(assumption, once=True)
    ready = current if current and current.status == current.Status.READY else None
    shown = ready or history_service.latest_ready_history(assumption)
    points = shown.points if shown else []
    drift = shown.drift if shown else None
    pending = ready is None and (current is None or current.status == current.Status.PENDING)
    waited = current.created_at if current else timezone.now()
    charted = any(point["observed"] is not None for point in points)
    failed = current.message if current and current.status == "failed" else ""
    return {
        "charted": charted,
        "nothing_to_draw": "" if charted or pending or failed else _nothing_to_draw(plan),
        "history": shown,
        "history_failed": failed,
        "history_pending": pending,
        "history_stalled": pending and timezone.now() - waited > RETEST_PATIENCE,
        "figure": charts.history_figure(assumption, points, runs, drift),
        "summary": charts.history_summary(assumption, points, drift),
        "points": points,
        "point_rows": [_point_row(assumption, point) for point in reversed(points)],
        "drift": drift,
    }


def latest_on_source(plan: Plan) -> tuple[dt.datetime | None, str]:
    with plan_engine(plan):  # the plan's Spark cluster, if its events live there
        return latest_data(plan.pk)


def _nothing_to_draw(plan: Plan) -> str:
    """In place of a chart with empty axes: why this test has no value to draw yet."""
    as_of, failure = latest_on_source(plan)
    if failure:
        return f"Nothing to draw: {failure}"
    if as_of is None:
        return (
            "Not tested yet: this plan has no customer data. Import customer events and this "
            "test is drawn here, period by period."
        )
    return (
        "Nothing to draw yet: no customer in the data fits this test in any period. Check its "
        "event type, segment and channel, or import more customer data."
    )


def _point_row(assumption: Assumption, point: dict) -> dict:
    fmt = assumption.format_value
    low, high = point["ci_low"], point["ci_high"]
    return {
        "as_of": dt.datetime.fromisoformat(point["as_of"]),
        "status": point["status"],
        "status_label": AssumptionStatus(point["status"]).label,
        "observed": fmt(point["observed"]),
        "interval": f"{fmt(low)} – {fmt(high)}" if low is not None and high is not None else "",
        "n": point["n"],
    }


RETEST_PATIENCE = dt.timedelta(minutes=2)


def _parse_since(raw: str | None):
    if not raw:
        return None
    try:
        since = dt.datetime.fromisoformat(raw)
    except ValueError:
        return None
    # A hand-edited `?since=` without a zone must not compare naive with aware (a 500).
    return since if since.tzinfo else since.replace(tzinfo=dt.UTC)


@require_POST
@login_required
def assumption_retest(request: AuthenticatedHttpRequest, slug: str, pk: int) -> HttpResponse:
    plan, membership = get_plan_for_user(request.user, slug)
    require_editor(membership)
    assumption = _get_assumption(plan.pk, pk)
    if not assumption.has_test:
        messages.error(request, "This assumption has no test to run; add one first.")
        return redirect("insights:assumption", slug=plan.slug, pk=assumption.pk)
    with transaction.atomic():
        since, created = request_assumption_retest(assumption)
        if created:
            enqueue(tasks.retest_assumption, assumption.pk, user_id=request.user.pk)
    if not created:
        messages.info(
            request, "A re-test of this assumption is already waiting: its result appears here."
        )
    url = reverse("insights:assumption", args=[plan.slug, assumption.pk])
    return redirect(f"{url}?{urlencode({'since': since.isoformat()})}")


@require_POST
@login_required
def plan_retest(request: AuthenticatedHttpRequest, slug: str) -> HttpResponse:
    plan, membership = get_plan_for_user(request.user, slug)
    require_editor(membership)
    with transaction.atomic():
        retest, created = request_plan_retest(plan, user=request.user)
        if created:
            enqueue(tasks.run_plan_retest, retest.pk)
    if not created:
        messages.info(request, "A re-test of this plan is already under way: here is its progress.")
    return redirect("insights:retest", slug=plan.slug, pk=retest.pk)


@require_GET
@login_required
def retest_detail(request: AuthenticatedHttpRequest, slug: str, pk: int) -> HttpResponse:
    plan, membership = get_plan_for_user(request.user, slug)
    retest = get_object_or_404(PlanRetest.objects.select_related("requested_by"), plan=plan, pk=pk)
    runs = list(
        retest.runs.select_related("assumption__choice").order_by(
            "assumption__choice__position", "assumption__choice_id", "assumption__position"
        )
    )
    total = tested_assumptions(plan).count()
    context = {
        "plan": plan,
        "membership": membership,
        "retest": retest,
        "runs": runs,
        "total": total,
        "changed": sum(1 for r in runs if r.changed),
        "data_move": data_moved(retest) if retest.status == PlanRetest.Status.DONE else None,
    }
    template = "insights/retest.html"
    if request.htmx:
        template += "#progress"
    return render(request, template, context)


@require_GET
@login_required
def assumption_map(request: AuthenticatedHttpRequest, slug: str) -> HttpResponse:
    plan, membership = get_plan_for_user(request.user, slug)
    assumptions = list(
        Assumption.objects.filter(choice__plan=plan)
        .select_related("choice")
        .order_by("-importance", "evidence", "id")
    )
    recent = plan.retests.select_related("requested_by")[:10]
    return render(
        request,
        "insights/assumption_map.html",
        {
            "plan": plan,
            "membership": membership,
            "assumptions": assumptions,
            "figure": charts.assumption_map_figure(assumptions),
            "summary": charts.assumption_map_summary(assumptions),
            "retests": recent,
        },
    )


TEST_FIELDS = Assumption.TEST_FIELDS


@require_POST
@login_required
def test_preview(request: AuthenticatedHttpRequest, slug: str) -> HttpResponse:
    """What a test being edited would say today: observed value, n, interval, status."""
    plan, membership = get_plan_for_user(request.user, slug)
    require_editor(membership)
    form = AssumptionForm(request.POST, plan=plan, instance=Assumption(choice=plan.choices.first()))
    form.is_valid()
    problems = [
        f"{form.fields[name].label if name in form.fields else name}: {error}"
        for name in TEST_FIELDS
        for error in form.errors.get(name, [])
    ]
    context: dict = {"problems": problems}
    data = form.cleaned_data
    if not problems and data.get("metric"):
        assumption = Assumption(
            metric=data["metric"],
            params=data.get("params") or {},
            comparator=data.get("comparator") or "",
            threshold=data.get("threshold"),
            threshold_high=data.get("threshold_high"),
            min_sample=data.get("min_sample") or 30,
            segment=data.get("segment") or "",
            channel=data.get("channel") or "",
            window_days=data.get("window_days"),
        )
        as_of, outcome = outcome_now(assumption, plan)  # on the plan's Spark cluster, if any
        m = outcome.measurement
        context.update(
            outcome=outcome,
            as_of=as_of,
            status_label=AssumptionStatus(outcome.status).label,
            observed=assumption.format_value(m.value) if m.value is not None else "",
            interval=(
                f"{assumption.format_value(m.ci_low)} – {assumption.format_value(m.ci_high)}"
                if m.ci_low is not None
                else ""
            ),
            target=assumption.target_display,
            sentence=assumption.test_sentence,
        )
    return render(request, "insights/test_preview.html", context)
