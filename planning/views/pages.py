"""Plan pages: the plan list, the board, activity, settings, plan files."""

from __future__ import annotations

from collections import defaultdict

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Count, Exists, OuterRef, Prefetch, Q
from django.http import HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from ..forms import (
    EmailPreferencesForm,
    NewPlanForm,
    PeriodForm,
    ScheduleForm,
)
from ..http import AuthenticatedHttpRequest, HtmxHttpRequest
from ..kinds import KINDS
from ..models import (
    VERDICTS,
    Activity,
    Assumption,
    BTInitiative,
    ChoiceStatus,
    Horizon,
    Membership,
    Plan,
    Role,
    StrategicChoice,
)
from ..planfile import PlanFileError, export_plan, load_plan_file, start_plan_from_file
from ..services import (
    RevertError,
    plans_for_user,
    revert_activity,
    save_period,
    save_schedule,
    start_plan,
)
from .access import get_plan_for_user, require_editor, require_facilitator
from .feed import Names, feed_lines


@require_GET
def home(request: HtmxHttpRequest) -> HttpResponse:
    return redirect("planning:plan_list")


@require_GET
@login_required
def plan_list(request: AuthenticatedHttpRequest) -> HttpResponse:
    plans = plans_for_user(request.user).annotate(
        choice_count=Count("choices", distinct=True),
        member_count=Count("memberships", distinct=True),
    )
    roles = dict(Membership.objects.filter(user=request.user).values_list("plan_id", "role"))
    rows = [(plan, Role(roles[plan.pk]).label) for plan in plans]
    return render(request, "planning/plan_list.html", {"rows": rows})


BOARD_FILTERS = ("bu", "owner", "status", "horizon", "verdict")


# The board's assumption verdict filter (DOMAIN §5, §10): value → (label, which assumptions).
# Filtered, the board shows the choices with such an assumption, and within them only those.
@require_GET
@login_required
def board(request: AuthenticatedHttpRequest, slug: str) -> HttpResponse:
    plan, membership = get_plan_for_user(request.user, slug)
    filters = {name: request.GET.get(name, "") for name in BOARD_FILTERS}
    if filters["verdict"] not in VERDICTS:
        filters["verdict"] = ""
    choices = _board_choices(plan, filters)
    stages = list(plan.stages.all())
    by_stage: dict[int, list[StrategicChoice]] = defaultdict(list)
    unplaced: list[StrategicChoice] = []
    # Each choice once, in the first stage it targets; its other stages show it as a link
    # ("also here") and it shows them as chips.
    also_here: dict[int, list[tuple[StrategicChoice, int]]] = defaultdict(list)
    order = {stage.pk: index for index, stage in enumerate(stages)}
    for choice in choices:
        targets = sorted(choice.stages.all(), key=lambda stage: order.get(stage.pk, 0))
        if targets:
            by_stage[targets[0].pk].append(choice)
            for other in targets[1:]:
                also_here[other.pk].append((choice, targets[0].pk))
        else:
            unplaced.append(choice)
    initiatives = (
        BTInitiative.objects.filter(plan=plan)
        .prefetch_related("stages", "choices")
        .order_by("position", "id")
    )
    members = list(plan.memberships.select_related("user"))
    context = {
        "plan": plan,
        "membership": membership,
        "columns": [(stage, by_stage[stage.pk], also_here[stage.pk]) for stage in stages],
        "unplaced": unplaced,
        "initiatives": initiatives,
        "filters": {**filters, "active": any(filters.values())},
        "filter_options": {
            "bu": sorted(
                {m.business_unit for m in members if m.business_unit}
                | set(
                    plan.choices.exclude(business_unit="").values_list("business_unit", flat=True)
                )
            ),
            "owners": members,
            "statuses": ChoiceStatus.choices,
            "horizons": Horizon.choices,
            "verdicts": [(value, label) for value, (label, _) in VERDICTS.items()],
        },
    }
    template = "planning/board.html#board_body" if request.htmx else "planning/board.html"
    return render(request, template, context)


def card_assumptions(only: Q | None = None) -> Prefetch:
    """A card's assumptions as the board shows them: in order, with owners and comment counts;
    `only` those of a verdict when the board is filtered on one."""
    assumptions = (
        Assumption.objects.select_related("owner__user")
        .annotate(comment_count=Count("comments"))
        .order_by("position", "id")
    )
    if only is not None:
        assumptions = assumptions.filter(only)
    return Prefetch("assumptions", queryset=assumptions)


def _board_choices(plan: Plan, filters: dict[str, str]):
    verdict = VERDICTS[filters["verdict"]][1] if filters["verdict"] else None
    choices = (
        StrategicChoice.objects.filter(plan=plan)
        .select_related("owner__user")
        .annotate(comment_count=Count("comments"))
        .prefetch_related("stages", card_assumptions(verdict))
        .order_by("position", "id")
    )
    if verdict is not None:
        choices = choices.filter(
            Exists(Assumption.objects.filter(verdict, choice_id=OuterRef("pk")))
        )
    if filters["bu"]:
        choices = choices.filter(business_unit=filters["bu"])
    if filters["owner"].isdigit():
        choices = choices.filter(owner_id=int(filters["owner"]))
    if filters["status"]:
        choices = choices.filter(status=filters["status"])
    if filters["horizon"]:
        choices = choices.filter(horizon=filters["horizon"])
    return choices


@require_GET
@login_required
def activity(request: AuthenticatedHttpRequest, slug: str) -> HttpResponse:
    """Every change to the plan, newest first, by item and by person, each in a sentence; each
    change to an item of the board can be reverted."""
    plan, membership = get_plan_for_user(request.user, slug)
    entries = Activity.objects.filter(plan=plan).select_related("actor", "reverts")
    item_type = request.GET.get("type", "")
    item_id = request.GET.get("item", "")
    actor = request.GET.get("person", "")
    if item_type:
        entries = entries.filter(item_type=item_type)
    if item_id.isdigit():
        entries = entries.filter(item_id=int(item_id))
    if actor.isdigit():
        entries = entries.filter(actor_id=int(actor))
    page = list(entries[:200])
    people = list(plan.memberships.select_related("user"))
    names = Names.of(plan, people, page)
    return render(
        request,
        "planning/activity.html",
        {
            "plan": plan,
            "membership": membership,
            "lines": feed_lines(page, names, membership),
            "usernames": names.usernames,
            "people": people,
            "filters": {"type": item_type, "item": item_id, "person": actor},
            "types": [
                *((kind.name, kind.plural.capitalize()) for kind in KINDS.values()),
                ("comment", "Comments"),
                ("member", "Members"),
                ("invitation", "Invitations"),
                ("plan", "Plan"),
                ("schedule", "Schedule"),
                ("period", "Periods"),
            ],
        },
    )


@require_http_methods(["GET", "POST"])
@login_required
def plan_settings(request: AuthenticatedHttpRequest, slug: str) -> HttpResponse:
    """The re-test schedule (facilitators) and each member's own e-mail preferences."""
    plan, membership = get_plan_for_user(request.user, slug)
    schedule = ScheduleForm(instance=plan, prefix="schedule")
    period = PeriodForm(instance=plan, prefix="period")
    email = EmailPreferencesForm(instance=membership, prefix="email")
    if request.method == "POST":
        if "period-period" in request.POST:
            require_facilitator(membership)
            period = PeriodForm(request.POST, instance=Plan(pk=plan.pk), prefix="period")
            if period.is_valid():
                plan = save_period(plan, request.user, period.cleaned_data["period"])
                messages.success(
                    request,
                    f"Figures and histories are drawn per {plan.period} now; the histories "
                    "are being computed again.",
                )
                return redirect("planning:settings", slug=plan.slug)
        elif "schedule-retest_cadence" in request.POST:
            require_facilitator(membership)
            schedule = ScheduleForm(request.POST, instance=plan, prefix="schedule")
            if schedule.is_valid():
                plan = save_schedule(plan, request.user, schedule.cleaned_data)
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
        {
            "plan": plan,
            "membership": membership,
            "schedule": schedule,
            "period": period,
            "email": email,
        },
        status=400 if schedule.errors or email.errors or period.errors else 200,
    )


def _left_out_message(names: list[str]) -> str:
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    return (
        f"The file also names {shown}: people join a plan by accepting an invitation, so "
        "invite them from the members page."
    )


@require_http_methods(["GET", "POST"])
@login_required
def new_plan(request: AuthenticatedHttpRequest) -> HttpResponse:
    form = NewPlanForm()
    file_errors: list[str] = []
    if request.method == "POST":
        form = NewPlanForm(request.POST, request.FILES)
        if form.is_valid():
            upload = form.cleaned_data["plan_file"]
            try:
                left_out: list[str] = []
                if upload:
                    plan, left_out = start_plan_from_file(
                        request.user, load_plan_file(upload.read())
                    )
                else:
                    plan = start_plan(
                        request.user, form.cleaned_data["name"], form.cleaned_data["slug"]
                    )
            except PlanFileError as error:
                file_errors = error.errors
            else:
                messages.success(request, f"“{plan.name}” is ready.")
                if left_out:
                    messages.info(request, _left_out_message(left_out))
                return redirect("planning:board", slug=plan.slug)
    return render(
        request,
        "planning/new_plan.html",
        {"form": form, "file_errors": file_errors},
        status=400 if form.errors or file_errors else 200,
    )


@require_GET
@login_required
def plan_file(request: AuthenticatedHttpRequest, slug: str) -> JsonResponse:
    """The plan as a file (DOMAIN §6), to keep, share or start another plan from."""
    plan, _ = get_plan_for_user(request.user, slug)
    response = JsonResponse(
        export_plan(plan), json_dumps_params={"indent": 2, "ensure_ascii": False}
    )
    response["Content-Disposition"] = f'attachment; filename="{plan.slug}.json"'
    return response


@require_POST
@login_required
def activity_revert(request: AuthenticatedHttpRequest, slug: str, pk: int) -> HttpResponse:
    plan, membership = get_plan_for_user(request.user, slug)
    require_editor(membership)
    entry = get_object_or_404(Activity, plan=plan, pk=pk)
    if entry.item_type == "stage":
        require_facilitator(membership)
    try:
        revert_activity(entry, request.user)
    except RevertError as error:
        messages.error(request, f"Not reverted: {error}")
    else:
        messages.success(request, f"Reverted: {entry.get_action_display()} {entry.item_label}.")
    return redirect("planning:activity", slug=plan.slug)
