"""Plan pages. Every plan URL goes through `get_plan_for_user`."""

from __future__ import annotations

import json
from collections import defaultdict

from asgiref.sync import sync_to_async
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import BadRequest
from django.db import transaction
from django.db.models import Count, Prefetch, Q
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRefresh

from lifecycle.models import Stage

from . import live, tasks
from .forms import (
    ITEM_FORMS,
    EmailPreferencesForm,
    MemberForm,
    MembershipForm,
    NewPlanForm,
    ScheduleForm,
)
from .models import (
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
from .planfile import PlanFileError, export_plan, load_plan_file
from .services import (
    Conflict,
    MemberError,
    RevertError,
    add_comment,
    add_member,
    change_member,
    changed_fields,
    create_item,
    delete_item,
    get_plan_for_user,
    kind_of,
    label_of,
    move_item,
    plans_for_user,
    record_activity,
    remove_member,
    require_editor,
    require_facilitator,
    revert_activity,
    save_item,
    snapshot,
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


BOARD_FILTERS = ("bu", "owner", "status", "horizon")


@require_GET
@login_required
def board(request: HttpRequest, slug: str) -> HttpResponse:
    plan, membership = get_plan_for_user(request.user, slug)
    filters = {name: request.GET.get(name, "") for name in BOARD_FILTERS}
    choices = _board_choices(plan, filters)
    stages = list(plan.stages.all())
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
    members = list(plan.memberships.select_related("user"))
    context = {
        "plan": plan,
        "membership": membership,
        "columns": [(stage, by_stage[stage.pk]) for stage in stages],
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
        },
    }
    template = "planning/board.html#board_body" if request.htmx else "planning/board.html"
    return render(request, template, context)


def _card_assumptions() -> Prefetch:
    """A card's assumptions as the board shows them: in order, with owners and comment counts."""
    assumptions = (
        Assumption.objects.select_related("owner__user")
        .annotate(comment_count=Count("comments"))
        .order_by("position", "id")
    )
    return Prefetch("assumptions", queryset=assumptions)


def _board_choices(plan: Plan, filters: dict[str, str]):
    choices = (
        StrategicChoice.objects.filter(plan=plan)
        .select_related("owner__user")
        .annotate(comment_count=Count("comments"))
        .prefetch_related("stages", _card_assumptions())
        .order_by("position", "id")
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


@require_http_methods(["GET", "POST"])
@login_required
def members(request: HttpRequest, slug: str) -> HttpResponse:
    """Who is in the plan; facilitators add, change and remove members."""
    plan, membership = get_plan_for_user(request.user, slug)
    form = MemberForm()
    if request.method == "POST":
        require_facilitator(membership)
        form = MemberForm(request.POST)
        if form.is_valid():
            data = form.cleaned_data
            try:
                added, invited = add_member(
                    plan,
                    request.user,
                    data["person"],
                    data["role"],
                    data["business_unit"].strip(),
                    first_name=data["first_name"],
                    last_name=data["last_name"],
                )
            except MemberError as error:
                form.add_error("person", str(error))
            else:
                if invited:
                    name = request.user.get_full_name() or request.user.get_username()
                    tasks.send_invitation.delay_on_commit(added.pk, name)
                    messages.success(
                        request,
                        f"Invited {added.user.email}: they get an e-mail to choose a password.",
                    )
                else:
                    messages.success(request, f"Added {added.display_name}.")
                return redirect("planning:members", slug=plan.slug)
    rows = plan.memberships.select_related("user").order_by(
        "role", "user__last_name", "user__username"
    )
    return render(
        request,
        "planning/members.html",
        {
            "plan": plan,
            "membership": membership,
            "members": rows,
            "form": form,
            "roles": Role.choices,
        },
        status=400 if form.errors else 200,
    )


@require_POST
@login_required
def member_change(request: HttpRequest, slug: str, pk: int) -> HttpResponse:
    plan, membership = get_plan_for_user(request.user, slug)
    require_facilitator(membership)
    target = get_object_or_404(plan.memberships.select_related("user", "plan"), pk=pk)
    form = MembershipForm(request.POST, instance=Membership.objects.get(pk=target.pk))
    try:
        if request.POST.get("remove"):
            remove_member(target, request.user)
            messages.success(request, f"Removed {target.display_name} from the plan.")
        elif form.is_valid():
            change_member(
                target, request.user, form.cleaned_data["role"], form.cleaned_data["business_unit"]
            )
            messages.success(request, f"Saved {target.display_name}.")
        else:
            messages.error(request, " ".join(e for errors in form.errors.values() for e in errors))
    except MemberError as error:
        messages.error(request, str(error))
    return redirect("planning:members", slug=plan.slug)


@require_GET
@login_required
def activity(request: HttpRequest, slug: str) -> HttpResponse:
    """Every change to the plan, newest first, by item and by person; each can be reverted."""
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
    names = {
        "stages": dict(plan.stages.values_list("pk", "name")),
        "choices": dict(plan.choices.values_list("pk", "title")),
        "owner": {m.pk: m.display_name for m in people},
    }
    return render(
        request,
        "planning/activity.html",
        {
            "plan": plan,
            "membership": membership,
            "entries": [(entry, describe_change(entry, names)) for entry in page],
            "people": people,
            "filters": {"type": item_type, "item": item_id, "person": actor},
            "types": [
                ("choice", "Choices"),
                ("assumption", "Assumptions"),
                ("initiative", "Initiatives"),
                ("stage", "Stages"),
                ("comment", "Comments"),
                ("plan", "Plan"),
                ("schedule", "Schedule"),
            ],
            "revertible": {"choice", "assumption", "initiative", "stage"},
        },
    )


FIELD_LABELS = {
    "title": "Title",
    "statement": "Statement",
    "stages": "Stages",
    "owner": "Owner",
    "business_unit": "Business unit",
    "horizon": "Horizon",
    "status": "Status",
    "rationale": "Rationale",
    "importance": "Importance",
    "evidence": "Evidence",
    "metric": "Metric",
    "params": "Parameters",
    "comparator": "Comparator",
    "threshold": "Threshold",
    "threshold_high": "Upper threshold",
    "min_sample": "Minimum sample",
    "segment": "Segment",
    "channel": "Channel",
    "window_days": "Window (days)",
    "choices": "Serves",
    "cost_estimate": "Cost estimate",
    "name": "Name",
    "position": "Position",
    "body": "Comment",
    "observed": "Observed",
}


def describe_change(entry: Activity, names: dict[str, dict]) -> list[dict[str, str]]:
    """Before → after, field by field, for the fields the change touched; ids become names."""
    before, after = entry.before or {}, entry.after or {}
    if entry.action in {"created", "deleted"} or entry.item_type == "plan":
        return []
    fields = [n for n in dict.fromkeys([*before, *after]) if not n.startswith("_")]

    def show(name: str, value):
        if name in names:
            ids = value if isinstance(value, list) else [value]
            value = [names[name].get(i, "(removed)") for i in ids if i is not None]
        return _short(value)

    return [
        {
            "label": FIELD_LABELS.get(n, n),
            "before": show(n, before.get(n)),
            "after": show(n, after.get(n)),
        }
        for n in fields
    ]


def _short(value) -> str:
    if value in (None, "", [], {}):
        return "—"
    if isinstance(value, dict):
        value = ", ".join(f"{k} {v}" for k, v in value.items())
    if isinstance(value, list):
        value = ", ".join(str(v) for v in value)
    text = str(value)
    return text if len(text) <= 120 else text[:117] + "…"


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
                    record_activity(
                        plan,
                        request.user,
                        "updated",
                        "schedule",
                        item_id=plan.pk,
                        item_label=plan.schedule_display,
                        before=before,
                        after=after,
                    )
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
                    plan = start_plan(
                        request.user, form.cleaned_data["name"], form.cleaned_data["slug"]
                    )
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
    response = JsonResponse(
        export_plan(plan), json_dumps_params={"indent": 2, "ensure_ascii": False}
    )
    response["Content-Disposition"] = f'attachment; filename="{plan.slug}.json"'
    return response


# --- editing the board in place ----------------------------------------------------------------
# One set of views serves choices, assumptions, initiatives and stages. With HTMX they answer
# with fragments; without JavaScript the same URLs render whole pages and redirect after a save.

ITEM_QUERYSETS = {
    "choice": lambda plan: (
        StrategicChoice.objects.filter(plan=plan)
        .select_related("owner__user")
        .annotate(comment_count=Count("comments"))
    ),
    "assumption": lambda plan: (
        Assumption.objects.filter(choice__plan=plan)
        .select_related("choice", "owner__user")
        .annotate(comment_count=Count("comments"))
    ),
    "initiative": lambda plan: BTInitiative.objects.filter(plan=plan),
    "stage": lambda plan: Stage.objects.filter(plan=plan),
}
KIND_NAMES = {
    "choice": "strategic choice",
    "assumption": "assumption",
    "initiative": "BT initiative",
    "stage": "stage",
}


def _item(plan: Plan, kind: str, pk: int):
    return get_object_or_404(ITEM_QUERYSETS[kind](plan), pk=pk)


def _require_rights(kind: str, membership: Membership) -> None:
    (require_facilitator if kind == "stage" else require_editor)(membership)


def _board_url(plan: Plan, item=None, stage_id: str | None = None) -> str:
    url = reverse("planning:board", args=[plan.slug])
    return f"{url}#{item_anchor(item, stage_id)}" if item is not None else url


def _card_stage(item, stage_id: str | None) -> str:
    """The column a choice's card (and its assumptions') is shown in: the one it was edited in
    if the choice still targets it, else its first stage; "none" for a choice on no stage."""
    choice = item if isinstance(item, StrategicChoice) else item.choice
    stages = [
        str(pk) for pk in choice.stages.order_by("position", "id").values_list("pk", flat=True)
    ]
    if stage_id and str(stage_id) in stages:
        return str(stage_id)
    return stages[0] if stages else "none"


def item_anchor(item, stage_id: str | None = None) -> str:
    """The id of the item's card on the board page. A choice has a card in every stage it
    targets, so its id (and its assumptions') names the stage."""
    kind = kind_of(item)
    if kind in {"choice", "assumption"}:
        return f"{kind}-{item.pk}-in-{_card_stage(item, stage_id)}"
    return f"{kind}-{item.pk}"


def _stage_in(request: HttpRequest) -> str | None:
    """The stage column the form was opened from (`in`), or the stage a new choice is for."""
    return request.POST.get("in") or request.GET.get("in") or request.GET.get("stage") or None


def _form_context(
    request, plan, membership, kind, form, item=None, parent=None, conflict=None, base=None
):
    return {
        "plan": plan,
        "membership": membership,
        "kind": kind,
        "kind_name": KIND_NAMES[kind],
        "form": form,
        "item": item,
        "parent": parent,
        "conflict": conflict,
        "base_json": json.dumps(base if base is not None else (snapshot(item) if item else {})),
        "version": getattr(conflict.current if conflict else item, "version", 0),
        "stage_id": _stage_in(request),
    }


def _render_item(request: HttpRequest, plan: Plan, membership: Membership, item, status: int = 200):
    """The item as it now is: a fragment for HTMX, else back to the board."""
    stage_id = _stage_in(request)
    if not request.htmx:
        return redirect(_board_url(plan, item, stage_id))
    kind = kind_of(item)
    context = {
        "plan": plan,
        "membership": membership,
        "item": item,
        "stage_id": _card_stage(item, stage_id) if kind in {"choice", "assumption"} else None,
    }
    if kind == "choice":
        context["choice"] = (
            ITEM_QUERYSETS["choice"](plan).prefetch_related(_card_assumptions()).get(pk=item.pk)
        )
    elif kind == "assumption":
        context["assumption"] = item
    elif kind == "initiative":
        context["initiative"] = item
    else:
        context["stage"] = item
    return render(request, f"planning/board.html#{kind}_item", context, status=status)


@require_http_methods(["GET", "POST"])
@login_required
def item_new(
    request: HttpRequest, slug: str, kind: str, parent_pk: int | None = None
) -> HttpResponse:
    plan, membership = get_plan_for_user(request.user, slug)
    _require_rights(kind, membership)
    parent = _item(plan, "choice", parent_pk) if kind == "assumption" else None
    instance = ITEM_FORMS[kind]._meta.model(**({"choice": parent} if parent else {"plan": plan}))
    initial = {"stages": [request.GET["stage"]]} if request.GET.get("stage", "").isdigit() else {}
    form = ITEM_FORMS[kind](
        request.POST if request.method == "POST" else None,
        plan=plan,
        instance=instance,
        initial=initial,
    )
    if request.method == "POST" and form.is_valid():
        values = form.values()
        item = create_item(
            kind, plan, request.user, values, **({"choice_id": parent.pk} if parent else {})
        )
        if kind == "stage" and request.htmx:
            return HttpResponseClientRefresh()  # a new column: the board is laid out again
        return _render_item(request, plan, membership, item)
    context = _form_context(request, plan, membership, kind, form, parent=parent)
    status = 422 if form.errors else 200
    template = "planning/item_form.html" + ("#item_form" if request.htmx else "")
    return render(request, template, context, status=status)


@require_http_methods(["GET", "POST"])
@login_required
def item_edit(request: HttpRequest, slug: str, kind: str, pk: int) -> HttpResponse:
    plan, membership = get_plan_for_user(request.user, slug)
    _require_rights(kind, membership)
    item = _item(plan, kind, pk)
    form = ITEM_FORMS[kind](
        request.POST if request.method == "POST" else None, plan=plan, instance=item
    )
    if request.method == "GET":
        context = _form_context(request, plan, membership, kind, form, item=item)
        return render(
            request, "planning/item_form.html" + ("#item_form" if request.htmx else ""), context
        )
    base, version = _posted_base(request)
    if request.POST.get("resolve") == "theirs":
        return _render_item(request, plan, membership, _item(plan, kind, pk))
    if not form.is_valid():
        context = _form_context(request, plan, membership, kind, form, item=item, base=base)
        context["version"] = version
        return render(
            request,
            "planning/item_form.html" + ("#item_form" if request.htmx else ""),
            context,
            status=422,
        )
    result = save_item(item, request.user, base_version=version, base=base, mine=form.values())
    if isinstance(result, Conflict):
        # The form comes back with my changes over their current values: "Keep mine" saves
        # it as is, and fields only they changed keep their version.
        merged = merge_for_form(base, result)
        merge_form = ITEM_FORMS[kind](plan=plan, instance=result.current, initial=merged)
        context = _form_context(
            request,
            plan,
            membership,
            kind,
            merge_form,
            item=result.current,
            conflict=result,
            base=result.theirs,
        )
        context["rows"] = conflict_rows(result, merge_form)
        return render(
            request,
            "planning/item_form.html" + ("#item_form" if request.htmx else ""),
            context,
            status=409,
        )
    return _render_item(request, plan, membership, _item(plan, kind, pk))


def _posted_base(request: HttpRequest) -> tuple[dict, int]:
    try:
        base = json.loads(request.POST.get("base") or "{}")
        version = int(request.POST.get("version") or 0)
    except ValueError:
        raise BadRequest("The form was damaged; reload the page and edit again.") from None
    if not isinstance(base, dict):
        raise BadRequest("The form was damaged; reload the page and edit again.")
    return base, version


def merge_for_form(base: dict, conflict: Conflict) -> dict:
    mine_changed = set(changed_fields(base, conflict.mine))
    merged = {
        name: conflict.mine[name] if name in mine_changed else value
        for name, value in conflict.theirs.items()
    }
    for name, value in (merged.get("params") or {}).items():
        merged[f"param_{name}"] = value
    return merged


def conflict_rows(conflict: Conflict, form) -> list[dict]:
    """Theirs and mine, field by field, in words."""
    rows = []
    for name in conflict.fields:
        field = form.fields.get(name)
        rows.append(
            {
                "name": name,
                "label": field.label if field else name,
                "theirs": describe_value(form, name, conflict.theirs.get(name)),
                "mine": describe_value(form, name, conflict.mine.get(name)),
            }
        )
    return rows


def describe_value(form, name: str, value) -> str:
    if value in (None, "", []):
        return "—"
    field = form.fields.get(name)
    choices = getattr(field, "choices", None)
    if name in {"stages", "choices", "owner"} and field is not None:
        labels = {obj.pk: field.label_from_instance(obj) for obj in field.queryset}
        ids = value if isinstance(value, list) else [value]
        return ", ".join(labels.get(i, "(removed)") for i in ids)
    if choices:
        return dict((str(k), v) for k, v in choices).get(str(value), str(value))
    if isinstance(value, dict):
        return ", ".join(f"{k} {v}" for k, v in value.items()) or "—"
    return str(value)


@require_GET
@login_required
def item_view(request: HttpRequest, slug: str, kind: str, pk: int) -> HttpResponse:
    """The item alone: what Cancel and live updates fetch."""
    plan, membership = get_plan_for_user(request.user, slug)
    item = _item(plan, kind, pk)
    if not request.htmx:
        return redirect(_board_url(plan, item, _stage_in(request)))
    return _render_item(request, plan, membership, item)


@require_POST
@login_required
def item_delete(request: HttpRequest, slug: str, kind: str, pk: int) -> HttpResponse:
    plan, membership = get_plan_for_user(request.user, slug)
    _require_rights(kind, membership)
    item = _item(plan, kind, pk)
    label = label_of(item)
    delete_item(item, request.user)
    if request.htmx:
        return HttpResponse("")
    messages.success(request, f"Deleted “{label}”. You can revert it from the activity.")
    return redirect(_board_url(plan))


@require_POST
@login_required
def item_move(request: HttpRequest, slug: str, kind: str, pk: int) -> HttpResponse:
    plan, membership = get_plan_for_user(request.user, slug)
    _require_rights(kind, membership)
    item = _item(plan, kind, pk)
    direction = {"up": -1, "down": 1}.get(request.POST.get("direction", ""))
    if direction is None:
        raise BadRequest("Move up or down.")
    move_item(item, request.user, direction)
    if request.htmx:
        return HttpResponseClientRefresh()
    return redirect(_board_url(plan, item, _stage_in(request)))


@require_POST
@login_required
def activity_revert(request: HttpRequest, slug: str, pk: int) -> HttpResponse:
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


# --- live: the event stream and presence --------------------------------------------------------


@require_GET
@login_required
async def events(request: HttpRequest, slug: str) -> StreamingHttpResponse:
    """Server-sent events for an open board. Served through ASGI: an open stream costs no
    thread. Outsiders get 404 here like everywhere."""
    user = await request.auser()
    plan, _ = await sync_to_async(get_plan_for_user)(user, slug)
    seen = request.headers.get("Last-Event-ID") or request.GET.get("v") or ""
    response = StreamingHttpResponse(
        live.stream(plan.pk, user.pk, int(seen) if seen.isdigit() else None),
        content_type="text/event-stream",
    )
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response


@require_POST
@login_required
def presence(request: HttpRequest, slug: str) -> HttpResponse:
    """What this open board is editing now (an item key, or nothing)."""
    plan, _ = get_plan_for_user(request.user, slug)
    connection = request.POST.get("connection", "")
    if not connection or len(connection) > 40:
        raise BadRequest("No connection.")
    editing = request.POST.get("editing", "")
    if not live.touch_presence(plan.pk, request.user.pk, connection, editing):
        raise BadRequest("Not your connection.")
    return HttpResponse(status=204)


@require_http_methods(["GET", "POST"])
@login_required
def comments(request: HttpRequest, slug: str, kind: str, pk: int) -> HttpResponse:
    """The comments on a choice or an assumption, and a box to add one (@name mentions)."""
    plan, membership = get_plan_for_user(request.user, slug)
    target = _item(plan, kind, pk)
    error = ""
    if request.method == "POST":
        require_editor(membership)
        body = request.POST.get("body", "").strip()
        if not body:
            error = "Write something first."
        elif len(body) > 5000:
            error = "A comment has at most 5,000 characters."
        else:
            add_comment(plan, request.user, target, body)
            if not request.htmx:
                return redirect(reverse(f"planning:{kind}_comments", args=[plan.slug, pk]))
    thread = target.comments.select_related("author").order_by("created_at", "id")
    context = {
        "plan": plan,
        "membership": membership,
        "kind": kind,
        "target": target,
        "thread": thread,
        "error": error,
        "stage_id": request.GET.get("in") or request.POST.get("in") or "",
        "members": plan.memberships.select_related("user"),
    }
    template = "planning/comments.html" + ("#panel" if request.htmx else "")
    return render(request, template, context, status=422 if error else 200)
