"""Editing the board in place: items, conflicts, comments. One set of views serves every kind
of item; with HTMX they answer with fragments, without JavaScript they redirect."""

from __future__ import annotations

import json
import math

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import BadRequest, ValidationError
from django.forms import BaseForm
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRefresh

from ..forms import PARAM_KINDS
from ..http import AuthenticatedHttpRequest, HtmxHttpRequest
from ..kinds import KINDS
from ..models import (
    Membership,
    Plan,
    StrategicChoice,
)
from ..services import (
    Conflict,
    add_comment,
    changed_fields,
    create_item,
    delete_item,
    kind_of,
    label_of,
    move_item,
    save_item,
    snapshot,
)
from .access import get_plan_for_user, require_editor, require_facilitator
from .pages import card_assumptions

# --- editing the board in place ----------------------------------------------------------------
# One set of views serves choices, assumptions, initiatives and stages. With HTMX they answer
# with fragments; without JavaScript the same URLs render whole pages and redirect after a save.


def _item(plan: Plan, kind: str, pk: int):
    return get_object_or_404(KINDS[kind].of_plan(plan), pk=pk)


def _require_rights(kind: str, membership: Membership) -> None:
    (require_facilitator if KINDS[kind].facilitators_only else require_editor)(membership)


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
    kind = KINDS[kind_of(item)]
    if kind.per_column:
        return f"{kind.name}-{item.pk}-in-{_card_stage(item, stage_id)}"
    return f"{kind.name}-{item.pk}"


def _stage_in(request: HtmxHttpRequest) -> str | None:
    """The stage column the form was opened from (`in`), or the stage a new choice is for."""
    return request.POST.get("in") or request.GET.get("in") or request.GET.get("stage") or None


def _form_context(
    request, plan, membership, kind, form, item=None, parent=None, conflict=None, base=None
):
    return {
        "plan": plan,
        "membership": membership,
        "kind": kind,
        "kind_name": KINDS[kind].label,
        "form": form,
        "item": item,
        "parent": parent,
        "conflict": conflict,
        "base_json": json.dumps(base if base is not None else (snapshot(item) if item else {})),
        "version": getattr(conflict.current if conflict else item, "version", 0),
        "stage_id": _stage_in(request),
    }


def _render_item(
    request: HtmxHttpRequest, plan: Plan, membership: Membership, item, status: int = 200
):
    """The item as it now is: a fragment for HTMX, else back to the board."""
    stage_id = _stage_in(request)
    if not request.htmx:
        return redirect(_board_url(plan, item, stage_id))
    kind = KINDS[kind_of(item)]
    if kind.name == "choice":  # its card shows its assumptions too
        item = kind.of_plan(plan).prefetch_related(card_assumptions()).get(pk=item.pk)
    context = {
        "plan": plan,
        "membership": membership,
        "item": item,
        kind.name: item,  # the board's partial for the kind names it so
        "stage_id": _card_stage(item, stage_id) if kind.per_column else None,
    }
    return render(request, f"planning/board.html#{kind.name}_item", context, status=status)


# What a link may fill in on a new item's form (…/assumptions/new/?metric=nps&threshold=30, as
# the Customers page's "Make this an assumption" does): plain fields and test parameters; the
# related ones are picked in the form. Every value is still checked when the form is saved.
NOT_PREFILLED = {"params", "owner", "stages", "choices"}


def prefilled(query, form_class) -> dict:
    names = {*form_class.base_fields, *(f"param_{name}" for name in PARAM_KINDS)}
    initial = {name: query[name] for name in names - NOT_PREFILLED if query.get(name, "").strip()}
    for name in ("threshold", "threshold_high"):  # the form writes a share's as a percentage
        try:
            if name in initial and not math.isfinite(float(initial[name])):
                raise ValueError
        except ValueError:
            del initial[name]
    return initial


@require_http_methods(["GET", "POST"])
@login_required
def item_new(
    request: AuthenticatedHttpRequest, slug: str, kind: str, parent_pk: int | None = None
) -> HttpResponse:
    plan, membership = get_plan_for_user(request.user, slug)
    _require_rights(kind, membership)
    spec = KINDS[kind]
    parent = _item(plan, spec.parent, parent_pk) if spec.parent and parent_pk else None
    instance = spec.model(**({spec.parent: parent} if spec.parent else {"plan": plan}))
    initial: dict[str, object] = {}
    if request.GET.get("stage", "").isdigit():
        initial["stages"] = [request.GET["stage"]]
    if "owner" in spec.form.base_fields:  # whoever adds it owns it, until they say otherwise
        initial["owner"] = membership.pk
    if request.method == "GET":
        initial.update(prefilled(request.GET, spec.form))
    form = spec.form(
        request.POST if request.method == "POST" else None,
        plan=plan,
        instance=instance,
        initial=initial,
    )
    if request.method == "POST" and form.is_valid():
        values = form.values()
        try:
            item = create_item(
                kind,
                plan,
                request.user,
                values,
                **({spec.parent_field: parent.pk} if parent else {}),
            )
        except ValidationError as error:  # the title was taken since the form checked it
            add_errors(form, error)
        else:
            if not spec.refreshes_alone and request.htmx:
                return HttpResponseClientRefresh()  # e.g. a new column: the board is laid out again
            return _render_item(request, plan, membership, item)
    context = _form_context(request, plan, membership, kind, form, parent=parent)
    status = 422 if form.errors else 200
    template = "planning/item_form.html" + ("#item_form" if request.htmx else "")
    return render(request, template, context, status=status)


@require_http_methods(["GET", "POST"])
@login_required
def item_edit(request: AuthenticatedHttpRequest, slug: str, kind: str, pk: int) -> HttpResponse:
    plan, membership = get_plan_for_user(request.user, slug)
    _require_rights(kind, membership)
    item = _item(plan, kind, pk)
    form = KINDS[kind].form(
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
    result = None
    if form.is_valid():
        try:
            result = save_item(
                item, request.user, base_version=version, base=base, mine=form.values()
            )
        except ValidationError as error:  # the title was taken since the form checked it
            add_errors(form, error)
    if result is None:
        context = _form_context(request, plan, membership, kind, form, item=item, base=base)
        context["version"] = version
        return render(
            request,
            "planning/item_form.html" + ("#item_form" if request.htmx else ""),
            context,
            status=422,
        )
    if isinstance(result, Conflict):
        # The form comes back with my changes over their current values: "Keep mine" saves
        # it as is, and fields only they changed keep their version.
        merged = merge_for_form(base, result)
        merge_form = KINDS[kind].form(plan=plan, instance=result.current, initial=merged)
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


def add_errors(form: BaseForm, error: ValidationError) -> None:
    """A service's refusal shown on the form, each message at its field where it has one."""
    errors = error.message_dict if hasattr(error, "error_dict") else {None: error.messages}
    for name, said in errors.items():
        form.add_error(name if name in form.fields else None, said)


def _posted_base(request: HtmxHttpRequest) -> tuple[dict, int]:
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
def item_view(request: AuthenticatedHttpRequest, slug: str, kind: str, pk: int) -> HttpResponse:
    """The item alone: what Cancel and live updates fetch."""
    plan, membership = get_plan_for_user(request.user, slug)
    item = _item(plan, kind, pk)
    if not request.htmx:
        return redirect(_board_url(plan, item, _stage_in(request)))
    return _render_item(request, plan, membership, item)


@require_POST
@login_required
def item_delete(request: AuthenticatedHttpRequest, slug: str, kind: str, pk: int) -> HttpResponse:
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
def item_move(request: AuthenticatedHttpRequest, slug: str, kind: str, pk: int) -> HttpResponse:
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


@require_http_methods(["GET", "POST"])
@login_required
def comments(request: AuthenticatedHttpRequest, slug: str, kind: str, pk: int) -> HttpResponse:
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
            comment = add_comment(plan, request.user, target, body)
            if not request.htmx:
                return redirect(comment)
    thread = target.comments.select_related("author").order_by("created_at", "id")
    members = list(plan.memberships.select_related("user").order_by("user__first_name"))
    context = {
        "plan": plan,
        "membership": membership,
        "kind": kind,
        "target": target,
        "thread": thread,
        "error": error,
        "stage_id": request.GET.get("in") or request.POST.get("in") or "",
        "members": members,
        "usernames": {m.user.get_username() for m in members},
        # What `@` suggests as a member types (static/js/mentions.js): everyone but oneself.
        "mention_options": json.dumps(
            [
                {
                    "username": m.user.get_username(),
                    "name": m.display_name,
                    "role": m.get_role_display(),
                }
                for m in members
                if m.user_id != request.user.pk
            ]
        ),
    }
    template = "planning/comments.html" + ("#panel" if request.htmx else "")
    return render(request, template, context, status=422 if error else 200)
