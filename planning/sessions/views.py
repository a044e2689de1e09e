"""The session pages: the plan's sessions ("Workshop"), the room, its actions, the summary.

The room is drawn for each person (their own private items and votes, the facilitator's
controls); every action answers with the actor's room at once, and the others' screens follow
through the plan's event stream (a `room` event), re-fetching their own room. Errors a member
can act on come back as the room with a message (409), nothing changed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.db.models import Prefetch, prefetch_related_objects
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.http import content_disposition_header
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from ..http import AuthenticatedHttpRequest
from ..models import Assumption, Membership, Plan, StrategicChoice
from ..models.sessions import (
    ItemKind,
    SessionNote,
    SessionStatus,
    SessionStep,
    StepKind,
    WorkshopSession,
)
from ..views.access import get_plan_for_user, require_editor, require_facilitator
from . import agenda, deciding, mapping, room, voting, writing
from .errors import SessionError
from .forms import NoteForm, SessionForm, StepForm
from .pdf import pdf_filename, summary_pdf
from .summary import owners, summarize

# --- the plan's sessions ---------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
@login_required
def sessions(request: AuthenticatedHttpRequest, slug: str) -> HttpResponse:
    """The plan's sessions, and a new one (facilitators)."""
    plan, membership = get_plan_for_user(request.user, slug)
    form = SessionForm(initial={"date": timezone.localdate(), "title": "Planning workshop"})
    if request.method == "POST":
        require_facilitator(membership)
        form = SessionForm(request.POST)
        if form.is_valid():
            data = form.cleaned_data
            try:
                session = agenda.create_session(
                    plan,
                    request.user,
                    title=data["title"],
                    date=data["date"],
                    template=data["template"],
                    votes_per_member=data["votes_per_member"],
                    votes_per_item=data["votes_per_item"],
                )
            except (SessionError, ValidationError) as error:
                form.add_error(None, _message(error))
            else:
                return redirect("planning:session", slug=plan.slug, pk=session.pk)
    listed = plan.sessions.select_related("current_step").order_by("-date", "-id")
    return render(
        request,
        "planning/sessions/list.html",
        {
            "plan": plan,
            "membership": membership,
            "active": "workshop",
            "sessions": listed,
            "form": form,
        },
        status=422 if form.errors else 200,
    )


def _session(plan: Plan, pk: int) -> WorkshopSession:
    return get_object_or_404(
        WorkshopSession.objects.select_related("plan", "current_step__stage"), plan=plan, pk=pk
    )


# --- the room ------------------------------------------------------------------------------------


@require_GET
@login_required
def session_room(request: AuthenticatedHttpRequest, slug: str, pk: int) -> HttpResponse:
    plan, membership = get_plan_for_user(request.user, slug)
    session = _session(plan, pk)
    return _room(request, session, membership)


def _room(
    request: AuthenticatedHttpRequest,
    session: WorkshopSession,
    membership: Membership,
    *,
    error: str = "",
    notice: str = "",
    status: int = 200,
) -> HttpResponse:
    context = room_context(session, membership, request.user)
    context.update(error=error, notice=notice)
    template = "planning/sessions/room.html"
    if request.htmx:
        template += "#room"
    return render(request, template, context, status=status)


def room_context(session: WorkshopSession, membership: Membership, user) -> dict:
    """The room as `session` stands (as `_session` read it: its plan and step at hand)."""
    # Read once for the whole room: a decide step finds the vote it follows among them.
    prefetch_related_objects(
        [session],
        Prefetch("steps", SessionStep.objects.select_related("stage").order_by("position", "id")),
    )
    steps = list(session.steps.all())
    stages = list(session.plan.stages.all()) if membership.can_manage else []
    for step in steps:
        step.session = session
        if membership.can_manage:
            step.form = StepForm(  # type: ignore[attr-defined]
                instance=step, plan=session.plan, stages=stages, prefix=f"step-{step.pk}"
            )
    current = next((s for s in steps if s.pk == session.current_step_id), None)
    now = timezone.now()
    context = {
        "plan": session.plan,
        "membership": membership,
        "active": "workshop",
        "session": session,
        "steps": steps,
        "step": current,
        "step_number": steps.index(current) + 1 if current else 0,
        "agenda_minutes": sum(s.timebox_minutes for s in steps),
        "is_facilitator": membership.can_manage,
        "can_take_part": membership.can_edit,
        "step_form": StepForm(plan=session.plan, stages=stages, prefix="new-step"),
        "timer": _timer(session, now),
        "server_now": int(now.timestamp() * 1000),
    }
    if current is not None and session.status == SessionStatus.RUNNING:
        context.update(STEP_CONTEXT[current.kind](current, membership, user))
    if session.status == SessionStatus.ENDED or (current and current.kind == StepKind.WRAP_UP):
        summary = summarize(session)
        context.update(summary=summary, owners=owners(summary))
    return context


@dataclass(frozen=True)
class Timer:
    state: str  # "running", "paused" or "idle"
    seconds: int  # left (running, paused) or the step's timebox (idle)
    ends_at: int | None  # running: the moment it ends, in ms since the epoch

    @property
    def display(self) -> str:
        minutes, seconds = divmod(self.seconds, 60)
        return f"{minutes:02d}:{seconds:02d}"


def _timer(session: WorkshopSession, now: dt.datetime) -> Timer:
    if session.timer_ends_at is not None:
        left = session.seconds_left(now) or 0
        return Timer("running", left, int(session.timer_ends_at.timestamp() * 1000))
    if session.timer_left is not None:
        return Timer("paused", session.timer_left, None)
    minutes = session.current_step.timebox_minutes if session.current_step else 0
    return Timer("idle", minutes * 60, None)


# --- what each kind of step shows -----------------------------------------------------------------


def _review(step: SessionStep, membership: Membership, user) -> dict:
    at_risk = deciding.agenda_items(step.session, step) if step.view == "at_risk" else []
    return {"at_risk": [a for a in at_risk if isinstance(a, Assumption)]}


def _brainstorm(step: SessionStep, membership: Membership, user) -> dict:
    items, authors = writing.room_counts(step)
    context: dict[str, object] = {"note_count": items, "author_count": authors}
    if step.revealed:
        notes = step.notes.filter(item_id__isnull=False, merged=False).select_related("author")
        context["revealed_notes"] = list(notes)
    else:
        context["my_notes"] = list(step.notes.filter(author=user).select_related("choice"))
        if membership.can_edit:
            context["note_form"] = NoteForm(step=step)
    return context


def _vote(step: SessionStep, membership: Membership, user) -> dict:
    mine = voting.my_votes(step, user)
    candidates = list(voting.candidates(step))
    left = step.session.votes_per_member - sum(mine.values())
    items = [
        {
            "id": item.pk,
            "title": voting.title_of(item),
            "mine": mine.get(item.pk, 0),
            "can_add": left > 0 and mine.get(item.pk, 0) < step.session.votes_per_item,
        }
        for item in candidates
    ]
    context: dict[str, object] = {
        "vote_items": items,
        "votes_left": left,
        "voter_count": voting.voters(step),
    }
    if step.revealed:
        context["ranking"] = voting.ranking(step, candidates)
    return context


def _map(step: SessionStep, membership: Membership, user) -> dict:
    places = mapping.positions(step)
    cells: dict[tuple[int, int], list] = {}
    for assumption in mapping.assumptions(step):
        importance, evidence, settled = places[assumption.pk]
        cells.setdefault((importance, evidence), []).append(
            {"assumption": assumption, "settled": settled}
        )
    rows = [
        {
            "importance": importance,
            "cells": [
                {"evidence": evidence, "items": cells.get((importance, evidence), [])}
                for evidence in mapping.SCALE
            ],
        }
        for importance in reversed(mapping.SCALE)
    ]
    return {"map_rows": rows, "scale": list(mapping.SCALE)}


def _decide(step: SessionStep, membership: Membership, user) -> dict:
    items = deciding.agenda_items(step.session, step)
    decided: dict[tuple[str, int], list] = {}
    for decision in step.session.decisions.all():
        decided.setdefault((decision.item_type, decision.item_id), []).append(decision)
    rows = []
    for item in items:
        kind = ItemKind.ASSUMPTION if isinstance(item, Assumption) else ItemKind.CHOICE
        done = decided.get((kind, item.pk), [])
        rows.append(
            {
                "item": item,
                "kind": kind,
                "key": deciding.key_of(item),
                "title": voting.title_of(item),
                "decisions": done,
            }
        )
    # Under discussion: the facilitator's pick, else the first item not yet decided.
    keys = [row["key"] for row in rows]
    focus = (
        step.focus
        if step.focus in keys
        else next((row["key"] for row in rows if not row["decisions"]), keys[0] if keys else "")
    )
    for row in rows:
        row["focused"] = row["key"] == focus
    members = Membership.objects.filter(plan_id=step.session.plan_id).select_related("user")
    return {"decide_items": rows, "members": [m for m in members if m.can_edit]}


def _nothing(step: SessionStep, membership: Membership, user) -> dict:
    return {}


STEP_CONTEXT: dict[str, Callable[[SessionStep, Membership, object], dict]] = {
    StepKind.REVIEW: _review,
    StepKind.BRAINSTORM: _brainstorm,
    StepKind.VOTE: _vote,
    StepKind.MAP: _map,
    StepKind.DECIDE: _decide,
    StepKind.WRAP_UP: _nothing,
}


# --- actions ----------------------------------------------------------------------------------------


Action = Callable[[AuthenticatedHttpRequest, WorkshopSession, Membership], str]


def _step_of(request: AuthenticatedHttpRequest, session: WorkshopSession) -> SessionStep:
    step = SessionStep.objects.filter(session=session, pk=_int(request.POST.get("step"))).first()
    if step is None:
        raise SessionError("That step is not on this session's agenda.")
    step.session = session
    return step


def _current(session: WorkshopSession) -> SessionStep:
    step = session.current_step  # read with its stage by `_session`
    if step is None or session.status != SessionStatus.RUNNING:
        raise SessionError("The session is not running.")
    step.session = session
    return step


def _int(value: object) -> int:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        raise SessionError("That request is incomplete: reload the page.") from None


def _start(request, session, membership):
    room.start_session(session)
    return "The session has started: everyone in the room follows."


def _next(request, session, membership):
    room.next_step(session)
    return ""


def _goto(request, session, membership):
    room.go_to_step(session, _step_of(request, session))
    return ""


def _end(request, session, membership):
    room.end_session(session)
    return "The session has ended; the summary goes to every member by e-mail."


def _timer_action(change):
    def act(request, session, membership):
        change(session)
        return ""

    return act


def _step_add(request, session, membership):
    form = StepForm(request.POST, plan=session.plan, prefix="new-step")
    if not form.is_valid():
        raise SessionError(_form_errors(form))
    agenda.add_step(session, form.save(commit=False))
    return "Step added to the agenda."


def _step_edit(request, session, membership):
    step = _step_of(request, session)
    form = StepForm(request.POST, instance=step, plan=session.plan, prefix=f"step-{step.pk}")
    if not form.is_valid():
        raise SessionError(_form_errors(form))
    agenda.change_step(form.save(commit=False))
    return "Step saved."


def _step_remove(request, session, membership):
    agenda.remove_step(_step_of(request, session))
    return "Step removed."


def _step_move(direction):
    def act(request, session, membership):
        agenda.move_step(_step_of(request, session), direction)
        return ""

    return act


def _note_add(request, session, membership):
    step = _current(session)
    form = NoteForm(request.POST, step=step)
    if not form.is_valid():
        raise SessionError(_form_errors(form))
    writing.add_note(step, request.user, form.cleaned_data["text"], form.cleaned_data.get("choice"))
    return "Added. Only you see it until the facilitator reveals the step."


def _note_remove(request, session, membership):
    note = SessionNote.objects.filter(pk=_int(request.POST.get("note")), step__session=session)
    found = note.select_related("step").first()
    if found is None:
        raise SessionError("That item is gone.")
    found.step.session = session
    writing.remove_note(found, request.user)
    return "Removed."


def _reveal(request, session, membership):
    step = _current(session)
    if step.kind == StepKind.BRAINSTORM:
        revealed = writing.reveal_notes(step, request.user)
        skipped = " ".join(revealed.skipped)
        return f"Revealed: {revealed.created} new items on the plan. {skipped}".strip()
    if step.kind == StepKind.VOTE:
        voting.reveal_votes(step)
        return "The votes are revealed."
    raise SessionError("This step has nothing to reveal.")


def _merge(request, session, membership):
    step = _step_of(request, session)
    writing.merge_items(
        session,
        step,
        _int(request.POST.get("duplicate")),
        _int(request.POST.get("into")),
        request.user,
    )
    return "Merged."


def _vote_action(delta):
    def act(request, session, membership):
        left = voting.vote(_current(session), membership, _int(request.POST.get("item")), delta)
        return f"{left} vote{'s' if left != 1 else ''} left."

    return act


def _assumption(request, session) -> Assumption:
    found = (
        Assumption.objects.filter(
            pk=_int(request.POST.get("assumption")), choice__plan_id=session.plan_id
        )
        .select_related("choice")
        .first()
    )
    if found is None:
        raise SessionError("That assumption is not on this plan.")
    return found


def _place(request, session, membership):
    assumption = _assumption(request, session)
    importance, evidence = _int(request.POST.get("importance")), _int(request.POST.get("evidence"))
    mapping.place(_current(session), assumption, importance, evidence, request.user)
    return f"Placed: importance {importance}, evidence {evidence}."


def _settle(request, session, membership):
    mapping.settle(_current(session), _assumption(request, session), request.user)
    return "Settled: the plan has its new importance and evidence."


def _choice(request, session) -> StrategicChoice:
    found = StrategicChoice.objects.filter(
        pk=_int(request.POST.get("choice")), plan_id=session.plan_id
    ).first()
    if found is None:
        raise SessionError("That choice is not on this plan.")
    return found


def _adopt(adopt: bool):
    def act(request, session, membership):
        choice = _choice(request, session)
        deciding.decide_choice(session, request.user, choice, adopt)
        return f"{'Adopted' if adopt else 'Rejected'}: {choice.title}."

    return act


def _owner(request, session, membership):
    if request.POST.get("kind") == ItemKind.ASSUMPTION:
        item: StrategicChoice | Assumption = _assumption(request, session)
    else:
        item = _choice(request, session)
    owner = Membership.objects.filter(
        plan_id=session.plan_id, pk=_int(request.POST.get("owner"))
    ).first()
    if owner is None:
        raise SessionError("Pick a member of this plan.")
    deciding.name_owner(session, request.user, item, owner)
    return f"Owner: {owner.display_name}."


def _discuss(request, session, membership):
    deciding.discuss(session, _current(session), str(request.POST.get("item", "")))
    return ""


def _tested(request, session, membership):
    if deciding.note_test(session, request.user, _assumption(request, session)) is None:
        raise SessionError("Give the assumption a test first (Give it a test).")
    return "Recorded: the assumption is tested."


# action → (who may, what it does)
ACTIONS: dict[str, tuple[str, Action]] = {
    "start": ("facilitator", _start),
    "next": ("facilitator", _next),
    "goto": ("facilitator", _goto),
    "end": ("facilitator", _end),
    "timer-start": ("facilitator", _timer_action(room.start_timer)),
    "timer-pause": ("facilitator", _timer_action(room.pause_timer)),
    "timer-add": ("facilitator", _timer_action(room.add_minute)),
    "timer-end": ("facilitator", _timer_action(room.end_timer)),
    "step-add": ("facilitator", _step_add),
    "step-edit": ("facilitator", _step_edit),
    "step-remove": ("facilitator", _step_remove),
    "step-up": ("facilitator", _step_move(-1)),
    "step-down": ("facilitator", _step_move(1)),
    "reveal": ("facilitator", _reveal),
    "merge": ("facilitator", _merge),
    "settle": ("facilitator", _settle),
    "adopt": ("facilitator", _adopt(True)),
    "reject": ("facilitator", _adopt(False)),
    "owner": ("facilitator", _owner),
    "tested": ("facilitator", _tested),
    "discuss": ("facilitator", _discuss),
    "note-add": ("editor", _note_add),
    "note-remove": ("editor", _note_remove),
    "vote": ("editor", _vote_action(1)),
    "unvote": ("editor", _vote_action(-1)),
    "place": ("editor", _place),
}


@require_POST
@login_required
def session_action(
    request: AuthenticatedHttpRequest, slug: str, pk: int, action: str
) -> HttpResponse:
    plan, membership = get_plan_for_user(request.user, slug)
    session = _session(plan, pk)
    if action not in ACTIONS:
        raise Http404("No such action")
    who, act = ACTIONS[action]
    if who == "facilitator":
        require_facilitator(membership)
    else:
        require_editor(membership)
    try:
        notice = act(request, session, membership)
    except SessionError as error:
        if not request.htmx:
            messages.error(request, str(error))
            return redirect("planning:session", slug=plan.slug, pk=session.pk)
        return _room(request, _session(plan, pk), membership, error=str(error), status=409)
    if not request.htmx:
        if notice:
            messages.success(request, notice)
        return redirect("planning:session", slug=plan.slug, pk=session.pk)
    # The room as the action left it, read again.
    return _room(request, _session(plan, pk), membership, notice=notice)


def _form_errors(form) -> str:
    return " ".join(str(e) for errors in form.errors.values() for e in errors)


def _message(error: Exception) -> str:
    if isinstance(error, ValidationError):
        return " ".join(error.messages)
    return str(error)


# --- the summary --------------------------------------------------------------------------------


@require_GET
@login_required
def session_summary(request: AuthenticatedHttpRequest, slug: str, pk: int) -> HttpResponse:
    plan, membership = get_plan_for_user(request.user, slug)
    session = _session(plan, pk)
    summary = summarize(session)
    return render(
        request,
        "planning/sessions/summary.html",
        {
            "plan": plan,
            "membership": membership,
            "active": "workshop",
            "session": session,
            "summary": summary,
            "owners": owners(summary),
        },
    )


@require_GET
@login_required
def session_pdf(request: AuthenticatedHttpRequest, slug: str, pk: int) -> HttpResponse:
    """The summary as a PDF ("Download PDF"), for everyone who may read the plan."""
    plan, _membership = get_plan_for_user(request.user, slug)
    session = _session(plan, pk)
    response = HttpResponse(summary_pdf(session), content_type="application/pdf")
    response["Content-Disposition"] = content_disposition_header(True, pdf_filename(session))
    return response
