"""The session summary (DOMAIN §11): decisions, ranked votes, new items, assumptions at risk or
drifting, owners and next re-test dates. One reading of the record (`summarize`) feeds the page,
the wrap-up step, the PDF and the e-mail."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from django.db.models import Q

from ..models import Assumption, AssumptionStatus, StrategicChoice, display_name
from ..models.sessions import (
    Decision,
    ItemKind,
    SessionNote,
    SessionStep,
    StepKind,
    WorkshopSession,
)
from .voting import Ranked, ranking


@dataclass(frozen=True)
class NewItem:
    kind: str  # "choice" or "assumption"
    title: str
    author: str
    step: str


@dataclass(frozen=True)
class Vote:
    step: SessionStep
    ranked: list[Ranked]


@dataclass
class Summary:
    session: WorkshopSession
    decisions: list[Decision] = field(default_factory=list)
    votes: list[Vote] = field(default_factory=list)
    new_items: list[NewItem] = field(default_factory=list)
    at_risk: list[Assumption] = field(default_factory=list)
    next_retest: dt.datetime | None = None


def summarize(session: WorkshopSession) -> Summary:
    summary = Summary(session)
    summary.decisions = list(session.decisions.select_related("decided_by").order_by("id"))
    steps = list(session.steps.order_by("position", "id"))
    for step in steps:
        step.session = session
        if step.kind == StepKind.VOTE and step.revealed:
            summary.votes.append(Vote(step, ranking(step)))
    notes = (
        SessionNote.objects.filter(step__session=session, item_id__isnull=False, merged=False)
        .select_related("author", "step")
        .order_by("step__position", "created_at", "id")
    )
    for note in notes:
        summary.new_items.append(
            NewItem(
                note.step.item_kind or ItemKind.CHOICE,
                note.text,
                display_name(note.author),
                note.step.title,
            )
        )
    summary.at_risk = list(
        Assumption.objects.filter(choice__plan_id=session.plan_id)
        .filter(
            Q(status__in=[AssumptionStatus.BROKEN, AssumptionStatus.AT_RISK])
            | Q(drift_since__isnull=False)
        )
        .select_related("owner__user", "choice")
        .order_by("choice__position", "position", "id")
    )
    summary.next_retest = session.plan.next_retest_at
    return summary


def owners(summary: Summary) -> list[tuple[str, str]]:
    """(item, owner) for the items the session decided on."""
    ids: dict[str, set[int]] = {ItemKind.CHOICE: set(), ItemKind.ASSUMPTION: set()}
    for decision in summary.decisions:
        ids[decision.item_type].add(decision.item_id)
    rows = []
    for model, kind in ((StrategicChoice, ItemKind.CHOICE), (Assumption, ItemKind.ASSUMPTION)):
        for item in model.objects.filter(pk__in=ids[kind]).select_related("owner__user"):
            owner = item.owner.display_name if item.owner else "No owner"
            rows.append((str(item), owner))
    return rows
