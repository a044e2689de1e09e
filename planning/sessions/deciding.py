"""Decide steps (DOMAIN §11): the top-ranked items one by one. A choice is adopted or rejected,
an item gets an owner, an assumption a test (in the board's own test editor, with its live
preview); each is a plan change like any other, and the room's record keeps the decision."""

from __future__ import annotations

from django.db import transaction
from django.db.models import Q

from ..models import Assumption, AssumptionStatus, ChoiceStatus, Membership, StrategicChoice
from ..models.sessions import Decision, ItemKind, SessionStep, StepKind, WorkshopSession
from ..services import User, kind_of, label_of, save_item, snapshot
from ..services.editing import Conflict
from .errors import SessionError
from .room import changed, locked, require_step, running
from .voting import ranking

TOP = 5
AT_RISK = [AssumptionStatus.BROKEN, AssumptionStatus.AT_RISK]


def agenda_items(session: WorkshopSession, step: SessionStep) -> list:
    """What a decide step walks: the top-ranked items of the latest revealed vote before it;
    with no vote, the assumptions that broke, are at risk or drift."""
    vote = last_revealed_vote(session, step)
    if vote is not None:
        vote.session = session
        return [row.item for row in ranking(vote)[:TOP]]
    at_risk = Assumption.objects.filter(choice__plan_id=session.plan_id).filter(
        Q(status__in=AT_RISK) | Q(drift_since__isnull=False)
    )
    order = {AssumptionStatus.BROKEN: 0, AssumptionStatus.AT_RISK: 1}
    return sorted(at_risk, key=lambda a: (order.get(a.status, 2), -a.importance, a.pk))


def last_revealed_vote(session: WorkshopSession, step: SessionStep) -> SessionStep | None:
    """The latest vote step at or before `step` whose votes are revealed. From the session's
    steps as the room read them (prefetched), else read here."""
    votes = [
        each
        for each in session.steps.all()
        if each.kind == StepKind.VOTE and each.revealed and each.position <= step.position
    ]
    return max(votes, key=lambda each: (each.position, each.pk), default=None)


def _decide(
    session: WorkshopSession,
    actor: User,
    item: StrategicChoice | Assumption,
    changes: dict,
    outcome: str,
    detail: str,
) -> Decision:
    session = running(session)
    plan_id = item.choice.plan_id if isinstance(item, Assumption) else item.plan_id
    if plan_id != session.plan_id:
        raise SessionError("That item is not on this plan.")
    current = type(item).objects.get(pk=item.pk)
    base = snapshot(current)
    saved = save_item(
        current, actor, base_version=current.version, base=base, mine={**base, **changes}
    )
    if isinstance(saved, Conflict):
        raise SessionError("The item changed meanwhile: look again and decide.")
    return record_decision(session, session.current_step, current, outcome, detail, actor)


def record_decision(
    session: WorkshopSession,
    step: SessionStep | None,
    item: StrategicChoice | Assumption,
    outcome: str,
    detail: str,
    actor: User,
) -> Decision:
    """The room's record of what it decided on a plan item (named as it now is); every screen
    in the room follows."""
    decision = Decision.objects.create(
        session=session,
        step=step,
        item_type=kind_of(item),
        item_id=item.pk,
        item_label=label_of(item),
        outcome=outcome,
        detail=detail,
        decided_by=actor,
    )
    changed(session)
    return decision


@transaction.atomic
def decide_choice(
    session: WorkshopSession, actor: User, choice: StrategicChoice, adopt: bool
) -> Decision:
    status = ChoiceStatus.ADOPTED if adopt else ChoiceStatus.REJECTED
    return _decide(
        session,
        actor,
        choice,
        {"status": status},
        Decision.Outcome.ADOPTED if adopt else Decision.Outcome.REJECTED,
        "",
    )


@transaction.atomic
def name_owner(
    session: WorkshopSession,
    actor: User,
    item: StrategicChoice | Assumption,
    owner: Membership,
) -> Decision:
    if owner.plan_id != session.plan_id:
        raise SessionError("The owner must be a member of this plan.")
    return _decide(
        session, actor, item, {"owner": owner.pk}, Decision.Outcome.OWNER, owner.display_name
    )


@transaction.atomic
def note_test(session: WorkshopSession, actor: User, assumption: Assumption) -> Decision | None:
    """After the board's test editor saved a test on an assumption under decision: recorded
    once per session and assumption."""
    session = running(session)
    assumption = Assumption.objects.get(pk=assumption.pk)
    if not assumption.metric:
        return None
    sentence = assumption.test_sentence
    decision, _ = Decision.objects.update_or_create(
        session=session,
        item_type=ItemKind.ASSUMPTION,
        item_id=assumption.pk,
        outcome=Decision.Outcome.TESTED,
        defaults={
            "step": session.current_step,
            "item_label": label_of(assumption),
            "detail": sentence[:400],
            "decided_by": actor,
        },
    )
    changed(session)
    return decision


def key_of(item: StrategicChoice | Assumption) -> str:
    return f"{kind_of(item)}-{item.pk}"


@transaction.atomic
def discuss(session: WorkshopSession, step: SessionStep, key: str) -> None:
    """The facilitator brings one of the step's items to the room's attention."""
    session = locked(session)
    require_step(session, step, StepKind.DECIDE, "Items are discussed")
    if key not in {key_of(item) for item in agenda_items(session, step)}:
        raise SessionError("That item is not on this step's list.")
    SessionStep.objects.filter(pk=step.pk).update(focus=key)
    changed(session)
