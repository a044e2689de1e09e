"""A session's agenda: the templates it starts from, and its steps added, changed, moved and
removed by the facilitator, before the session and during it."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.db import transaction
from django.db.models import Max

from lifecycle.models import Stage

from ..models import Plan
from ..models.sessions import (
    MAX_STEPS,
    ItemKind,
    ReviewView,
    SessionStatus,
    SessionStep,
    StepKind,
    WorkshopSession,
)
from ..services import User
from .errors import SessionError
from .room import changed, locked


@dataclass(frozen=True)
class StepPlan:
    kind: str
    title: str
    minutes: int
    item_kind: str = ""
    view: str = ""
    stage: Stage | None = None


def outside_in_workshop(plan: Plan) -> list[StepPlan]:
    """Review customers by stage → brainstorm choices per stage → surface the assumptions →
    map them → vote → decide → wrap up."""
    stages = list(plan.stages.all())
    return [
        StepPlan(StepKind.REVIEW, "Review customers by stage", 15, view=ReviewView.CUSTOMERS),
        *(
            StepPlan(
                StepKind.BRAINSTORM,
                f"Choices for {stage.name}",
                5,
                item_kind=ItemKind.CHOICE,
                stage=stage,
            )
            for stage in stages
        ),
        StepPlan(StepKind.BRAINSTORM, "Surface the assumptions", 10, item_kind=ItemKind.ASSUMPTION),
        StepPlan(StepKind.MAP, "Map the assumptions", 10),
        StepPlan(StepKind.VOTE, "Vote on the choices", 5, item_kind=ItemKind.CHOICE),
        StepPlan(StepKind.DECIDE, "Decide", 20),
        StepPlan(StepKind.WRAP_UP, "Wrap up", 5),
    ]


def assumption_review(plan: Plan) -> list[StepPlan]:
    """Review what broke or drifts → decide."""
    return [
        StepPlan(StepKind.REVIEW, "What broke or drifts", 15, view=ReviewView.AT_RISK),
        StepPlan(StepKind.DECIDE, "Decide", 20),
        StepPlan(StepKind.WRAP_UP, "Wrap up", 5),
    ]


TEMPLATES = {
    "workshop": ("Outside-in planning workshop", outside_in_workshop),
    "review": ("Assumption review", assumption_review),
    "blank": ("From scratch", lambda plan: []),
}


@transaction.atomic
def create_session(
    plan: Plan, actor: User, *, title: str, date: dt.date, template: str, **settings: int
) -> WorkshopSession:
    """A planned session, its agenda from a template (TEMPLATES)."""
    if template not in TEMPLATES:
        raise SessionError("Choose one of the templates.")
    session = WorkshopSession(plan=plan, title=title, date=date, created_by=actor, **settings)
    session.full_clean()
    session.save()
    for position, step in enumerate(TEMPLATES[template][1](plan)):
        SessionStep.objects.create(
            session=session,
            position=position,
            kind=step.kind,
            title=step.title,
            timebox_minutes=step.minutes,
            item_kind=step.item_kind,
            view=step.view,
            stage=step.stage,
        )
    return session


def clean_step(step: SessionStep) -> None:
    """The step as its kind needs it: what it works on is set, the rest cleared."""
    if step.kind == StepKind.BRAINSTORM:
        step.item_kind = step.item_kind or ItemKind.CHOICE
    elif step.kind == StepKind.VOTE:
        step.item_kind = step.item_kind or ItemKind.CHOICE
        step.stage = None
    else:
        step.item_kind, step.stage = "", None
    if step.kind == StepKind.REVIEW:
        step.view = step.view or ReviewView.CUSTOMERS
    else:
        step.view = ""
    if step.stage is not None and step.stage.plan_id != step.session.plan_id:
        raise SessionError("That stage is not one of this plan's.")
    step.full_clean(exclude=["session"])


def _open_agenda(session: WorkshopSession) -> WorkshopSession:
    """The session, locked, while its agenda may change (until it ends)."""
    session = locked(session)
    if session.status == SessionStatus.ENDED:
        raise SessionError("This session has ended: its agenda is kept as it was.")
    return session


@transaction.atomic
def add_step(session: WorkshopSession, step: SessionStep) -> SessionStep:
    session = _open_agenda(session)
    if session.steps.count() >= MAX_STEPS:
        raise SessionError(f"An agenda has at most {MAX_STEPS} steps.")
    step.session = session
    clean_step(step)
    step.position = (session.steps.aggregate(last=Max("position"))["last"] or 0) + 1
    step.save()
    changed(session)
    return step


@transaction.atomic
def change_step(step: SessionStep) -> SessionStep:
    session = _open_agenda(step.session)
    clean_step(step)
    step.save()
    changed(session)
    return step


@transaction.atomic
def remove_step(step: SessionStep) -> None:
    session = _open_agenda(step.session)
    if session.current_step_id == step.pk:
        raise SessionError("The room is on this step: move to another step before removing it.")
    if step.notes.exists() or step.votes.exists():
        raise SessionError("Members wrote or voted in this step: it stays in the record.")
    step.delete()
    changed(session)


@transaction.atomic
def move_step(step: SessionStep, direction: int) -> None:
    """One place up (-1) or down (+1) in the agenda."""
    session = locked(step.session)
    steps = list(session.steps.order_by("position", "id"))
    index = next(i for i, s in enumerate(steps) if s.pk == step.pk)
    other = index + direction
    if not 0 <= other < len(steps):
        return
    steps[index], steps[other] = steps[other], steps[index]
    for position, each in enumerate(steps):
        if each.position != position:
            SessionStep.objects.filter(pk=each.pk).update(position=position)
    changed(session)
