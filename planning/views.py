"""Plan pages. Every plan URL goes through `get_plan_for_user`."""

from __future__ import annotations

from collections import defaultdict

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.db.models import Count, Prefetch, Q
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from .models import Activity, Assumption, BTInitiative, Membership, Role, StrategicChoice
from .forms import EmailPreferencesForm, NewPlanForm, ScheduleForm
from .planfile import PlanFileError, export_plan, load_plan_file
from .services import (
    get_plan_for_user,
    plans_for_user,
    record_activity,
    require_facilitator,
    start_plan,
    start_plan_from_file,
)


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    return redirect("planning:plan_list")


@require_GET
@login_required
def plan_list(request: HttpRequest) -> HttpResponse:
    plans = plans_for_user(request.user).annotate(
        choice_count=Count("choices", distinct=True),
        member_count=Count("memberships", distinct=True),
        broken_count=Count(
            "choices__assumptions",
            filter=Q(choices__assumptions__status="broken"),
            distinct=True,
        ),
    )
    roles = dict(Membership.objects.filter(user=request.user).values_list("plan_id", "role"))
    rows = [(plan, Role(roles[plan.pk]).label) for plan in plans]
    return render(request, "planning/plan_list.html", {"rows": rows})


@require_GET
@login_required
def board(request: HttpRequest, slug: str) -> HttpResponse:
    plan, membership = get_plan_for_user(request.user, slug)
    stages = list(plan.stages.all())
    assumptions = Assumption.objects.select_related("owner__user").order_by("position", "id")
    choices = (
        StrategicChoice.objects.filter(plan=plan)
        .select_related("owner__user")
        .prefetch_related("stages", Prefetch("assumptions", queryset=assumptions))
        .order_by("position", "id")
    )
    by_stage: dict[int, list[StrategicChoice]] = defaultdict(list)
    unplaced: list[StrategicChoice] = []
    for choice in choices:
        targets = choice.stages.all()
        for stage in targets:
            by_stage[stage.pk].append(choice)
        if not targets:
            unplaced.append(choice)
    initiatives = (
        BTInitiative.objects.filter(plan=plan)
        .prefetch_related("stages", "choices")
        .order_by("position", "id")
    )
    columns = [(stage, by_stage[stage.pk]) for stage in stages]
    return render(
        request,
        "planning/board.html",
        {
            "plan": plan,
            "membership": membership,
            "columns": columns,
            "unplaced": unplaced,
            "initiatives": initiatives,
        },
    )


@require_GET
@login_required
def members(request: HttpRequest, slug: str) -> HttpResponse:
    plan, membership = get_plan_for_user(request.user, slug)
    rows = plan.memberships.select_related("user").order_by("role", "user__last_name")
    return render(
        request,
        "planning/members.html",
        {"plan": plan, "membership": membership, "members": rows},
    )


@require_GET
@login_required
def activity(request: HttpRequest, slug: str) -> HttpResponse:
    plan, membership = get_plan_for_user(request.user, slug)
    entries = Activity.objects.filter(plan=plan).select_related("actor")[:200]
    return render(
        request,
        "planning/activity.html",
        {"plan": plan, "membership": membership, "entries": entries},
    )


@require_http_methods(["GET", "POST"])
@login_required
def plan_settings(request: HttpRequest, slug: str) -> HttpResponse:
    """The re-test schedule (facilitators) and each member's own e-mail preferences."""
    plan, membership = get_plan_for_user(request.user, slug)
    schedule = ScheduleForm(instance=plan, prefix="schedule")
    email = EmailPreferencesForm(instance=membership, prefix="email")
    if request.method == "POST":
        if "schedule-retest_cadence" in request.POST:
            require_facilitator(membership)
            before = {f: str(getattr(plan, f)) for f in ScheduleForm.Meta.fields}
            schedule = ScheduleForm(request.POST, instance=plan, prefix="schedule")
            if schedule.is_valid():
                with transaction.atomic():
                    plan = schedule.save()
                    after = {f: str(getattr(plan, f)) for f in ScheduleForm.Meta.fields}
                    record_activity(plan, request.user, "updated", "schedule",
                                    item_id=plan.pk, item_label=plan.schedule_display,
                                    before=before, after=after)
                messages.success(request, f"Re-test schedule saved: {plan.schedule_display}.")
                return redirect("planning:settings", slug=plan.slug)
        else:
            email = EmailPreferencesForm(request.POST, instance=membership, prefix="email")
            if email.is_valid():
                email.save()
                messages.success(request, "Your e-mail preferences are saved.")
                return redirect("planning:settings", slug=plan.slug)
    return render(
        request,
        "planning/settings.html",
        {"plan": plan, "membership": membership, "schedule": schedule, "email": email},
        status=400 if schedule.errors or email.errors else 200,
    )


@require_http_methods(["GET", "POST"])
@login_required
def new_plan(request: HttpRequest) -> HttpResponse:
    form = NewPlanForm()
    file_errors: list[str] = []
    if request.method == "POST":
        form = NewPlanForm(request.POST, request.FILES)
        if form.is_valid():
            upload = form.cleaned_data["plan_file"]
            try:
                if upload:
                    plan = start_plan_from_file(request.user, load_plan_file(upload.read()))
                else:
                    plan = start_plan(request.user, form.cleaned_data["name"], form.cleaned_data["slug"])
            except PlanFileError as error:
                file_errors = error.errors
            else:
                messages.success(request, f"“{plan.name}” is ready.")
                return redirect("planning:board", slug=plan.slug)
    return render(
        request,
        "planning/new_plan.html",
        {"form": form, "file_errors": file_errors},
        status=400 if form.errors or file_errors else 200,
    )


@require_GET
@login_required
def plan_file(request: HttpRequest, slug: str) -> JsonResponse:
    """The plan as a file (DOMAIN §6), to keep, share or start another plan from."""
    plan, _ = get_plan_for_user(request.user, slug)
    response = JsonResponse(export_plan(plan), json_dumps_params={"indent": 2, "ensure_ascii": False})
    response["Content-Disposition"] = f'attachment; filename="{plan.slug}.json"'
    return response
