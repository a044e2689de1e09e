"""Mapping (map steps, DOMAIN §11): the room places the plan's assumptions on importance ×
evidence, by dragging or with the keyboard; a position is a proposal until the facilitator
settles it, which sets the assumption's importance and evidence (a plan change like any other:
activity, live, revertable)."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from ..models import Assumption
from ..models.sessions import Decision, MapPlacement, SessionStep, StepKind
from ..services import User, save_item, snapshot
from ..services.editing import Conflict
from .deciding import record_decision
from .errors import SessionError
from .room import changed, locked, require_step

SCALE = range(1, 6)


def assumptions(step: SessionStep) -> list[Assumption]:
    return list(
        Assumption.objects.filter(choice__plan_id=step.session.plan_id)
        .select_related("choice")
        .order_by("choice__position", "position", "id")
    )


def positions(step: SessionStep) -> dict[int, tuple[int, int, bool]]:
    """Each assumption's place on the map: its proposal in this step, else where the plan has
    it; and whether the place is settled (the plan's own values)."""
    proposed = {
        p.assumption_id: (p.importance, p.evidence, p.settled_at is not None)
        for p in step.placements.all()
    }
    return {a.pk: proposed.get(a.pk, (a.importance, a.evidence, True)) for a in assumptions(step)}


def _in_step(step: SessionStep, assumption: Assumption):
    session = locked(step.session)
    require_step(session, step, StepKind.MAP, "Assumptions are placed")
    if assumption.choice.plan_id != session.plan_id:
        raise SessionError("That assumption is not on this plan.")
    return session


@transaction.atomic
def place(
    step: SessionStep, assumption: Assumption, importance: int, evidence: int, actor: User
) -> MapPlacement:
    """Propose a place for an assumption (any member but an observer; the view checks)."""
    session = _in_step(step, assumption)
    if importance not in SCALE or evidence not in SCALE:
        raise SessionError("Importance and evidence go from 1 to 5.")
    placement, _ = MapPlacement.objects.update_or_create(
        step=step,
        assumption=assumption,
        defaults={
            "importance": importance,
            "evidence": evidence,
            "moved_by": actor,
            "settled_at": None,
        },
    )
    changed(session)
    return placement


@transaction.atomic
def settle(step: SessionStep, assumption: Assumption, actor: User) -> Assumption:
    """The facilitator settles the proposed place: the assumption's importance and evidence."""
    session = _in_step(step, assumption)
    placement = MapPlacement.objects.filter(step=step, assumption=assumption).first()
    if placement is None or placement.settled_at is not None:
        raise SessionError("Move the assumption first: its place is the plan's already.")
    current = Assumption.objects.get(pk=assumption.pk)
    base = snapshot(current)
    mine = {**base, "importance": placement.importance, "evidence": placement.evidence}
    saved = save_item(current, actor, base_version=current.version, base=base, mine=mine)
    if isinstance(saved, Conflict):  # cannot happen on the stored version; kept honest
        raise SessionError("The assumption changed meanwhile: place it again.")
    placement.settled_at = timezone.now()
    placement.save(update_fields=["settled_at"])
    detail = f"importance {placement.importance}, evidence {placement.evidence}"
    record_decision(session, step, current, Decision.Outcome.PLACED, detail, actor)
    return current
