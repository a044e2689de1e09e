"""Decide steps (DOMAIN §11): the top-ranked items one by one. A choice is adopted or rejected,
an item gets an owner, an assumption a test (in the board's own test editor, with its live
preview); each is a plan change like any other, and the room's record keeps the decision."""

from __future__ import annotations

from django.db import transaction
from django.db.models import Q

from ..models import Assumption, AssumptionStatus, ChoiceStatus, Membership, StrategicChoice
from ..models.sessions import Decision, ItemKind, SessionStep, StepKind, WorkshopSession
from ..services import User, label_of, save_item, snapshot
from ..services.editing import Conflict
from .errors import SessionError
from .room import changed, locked, require_step, running
from .voting import candidates, ranking

TOP = 5
AT_RISK = [AssumptionStatus.BROKEN, AssumptionStatus.AT_RISK]


def agenda_items(session: WorkshopSession, step: SessionStep) -> list:
    """What a decide step walks: the top-ranked items of the latest revealed vote before it;
    with no vote, the assumptions that broke, are at risk or drift."""
    vote = (
        session.steps.filter(kind=StepKind.VOTE, revealed_at__isnull=False)
        .filter(position__lte=step.position)
        .order_by("-position", "-id")
        .first()
    )
    if vote is not None:
        vote.session = session
        top = [row.item_id for row in ranking(vote)[:TOP]]
        items = candidates(vote).in_bulk(top)
        return [items[pk] for pk in top if pk in items]
    at_risk = Assumption.objects.filter(choice__plan_id=session.plan_id).filter(
        Q(status__in=AT_RISK) | Q(drift_since__isnull=False)
    )
    order = {AssumptionStatus.BROKEN: 0, AssumptionStatus.AT_RISK: 1}
    return sorted(at_risk, key=lambda a: (order.get(a.status, 2), -a.importance, a.pk))


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
    decision = Decision.objects.create(
        session=session,
        step=session.current_step,
        item_type=ItemKind.ASSUMPTION if isinstance(item, Assumption) else ItemKind.CHOICE,
        item_id=item.pk,
        item_label=label_of(current),
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
    kind = ItemKind.ASSUMPTION if isinstance(item, Assumption) else ItemKind.CHOICE
    return f"{kind}-{item.pk}"


@transaction.atomic
def discuss(session: WorkshopSession, step: SessionStep, key: str) -> None:
    """The facilitator brings one of the step's items to the room's attention."""
    session = locked(session)
    require_step(session, step, StepKind.DECIDE, "Items are discussed")
    if key not in {key_of(item) for item in agenda_items(session, step)}:
        raise SessionError("That item is not on this step's list.")
    SessionStep.objects.filter(pk=step.pk).update(focus=key)
    changed(session)
