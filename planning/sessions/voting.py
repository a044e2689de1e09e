"""Dot voting (vote steps, DOMAIN §11): N dots per member, at most M on one item, on the plan's
choices or assumptions. Until the facilitator reveals the step, each member sees only their own
dots and how many are left; then everyone sees the same ranking. Observers never vote.

A vote locks the step's row, as the reveal does: votes are counted one after the other (a
member's two tabs or double click never pass a cap) and none lands after the reveal, so the
ranking everyone sees is final. A vote takes a few milliseconds: a room of 30 voting at once
waits well under a second.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction
from django.db.models import Count, F, QuerySet, Sum
from django.utils import timezone

from ..models import Assumption, Membership, StrategicChoice
from ..models.sessions import ItemKind, SessionStep, SessionVote, StepKind, WorkshopSession
from ..services import User
from .errors import SessionError
from .room import changed, locked, require_step


def candidates(step: SessionStep) -> QuerySet:
    """What a vote step is on: the plan's choices (not rejected or retired) or assumptions."""
    plan_id = step.session.plan_id
    if step.item_kind == ItemKind.ASSUMPTION:
        return Assumption.objects.filter(choice__plan_id=plan_id).order_by(
            "choice__position", "position", "id"
        )
    return StrategicChoice.objects.filter(
        plan_id=plan_id, status__in=["proposed", "adopted"]
    ).order_by("position", "id")


def title_of(item) -> str:
    return item.statement if isinstance(item, Assumption) else item.title


@transaction.atomic
def vote(step: SessionStep, member: Membership, item_id: int, delta: int) -> int:
    """A member adds (+1) or takes back (-1) one dot on an item; their dots left come back."""
    if delta not in (1, -1):
        raise SessionError("A vote adds or removes one dot.")
    if member.plan_id != step.session.plan_id or not member.can_edit:
        raise SessionError("Observers watch the vote; they do not vote.")
    voter = member.user_id
    step = SessionStep.objects.select_for_update().get(pk=step.pk)
    session = WorkshopSession.objects.get(pk=step.session_id)
    step.session = session
    require_step(session, step, StepKind.VOTE, "Votes are cast")
    if step.revealed:
        raise SessionError("The votes are revealed: the vote is closed.")
    if not candidates(step).filter(pk=item_id).exists():
        raise SessionError("That item is not in this vote.")
    mine = SessionVote.objects.filter(step=step, voter_id=voter)
    used = mine.aggregate(n=Sum("count"))["n"] or 0
    row = mine.filter(item_type=step.item_kind, item_id=item_id).first()
    on_item = row.count if row else 0
    if delta > 0:
        if used >= session.votes_per_member:
            raise SessionError(f"You have used all {session.votes_per_member} of your votes.")
        if on_item >= session.votes_per_item:
            raise SessionError(f"At most {session.votes_per_item} votes on one item.")
        if row is None:
            SessionVote.objects.create(
                step=step, voter_id=voter, item_type=step.item_kind, item_id=item_id, count=1
            )
        else:
            mine.filter(pk=row.pk).update(count=F("count") + 1)
    else:
        if row is None:
            raise SessionError("You have no vote on this item to remove.")
        if row.count == 1:
            row.delete()
        else:
            mine.filter(pk=row.pk).update(count=F("count") - 1)
    if used + delta in (0, 1) and used in (0, 1):
        # A member's first dot, or their last taken back: the room's "N members voted" moves.
        changed(session)
    return session.votes_per_member - used - delta


def my_votes(step: SessionStep, voter: User) -> dict[int, int]:
    return dict(SessionVote.objects.filter(step=step, voter=voter).values_list("item_id", "count"))


def voters(step: SessionStep) -> int:
    return SessionVote.objects.filter(step=step).values("voter").distinct().count()


@dataclass(frozen=True)
class Ranked:
    rank: int
    item_id: int
    title: str
    votes: int
    voters: int
    item: StrategicChoice | Assumption


def ranking(step: SessionStep, items: list | None = None) -> list[Ranked]:
    """Every candidate with at least one vote, most votes first (ties: in the plan's order),
    ranked as in sport: equal votes share a rank. `items`: the step's candidates, when the
    caller has read them already."""
    totals = {
        row["item_id"]: (row["votes"], row["voters"])
        for row in SessionVote.objects.filter(step=step)
        .values("item_id")
        .annotate(votes=Sum("count"), voters=Count("voter", distinct=True))
    }
    if items is None:
        items = list(candidates(step))
    order = {item.pk: (i, item) for i, item in enumerate(items)}
    rows = sorted(
        (item_id for item_id in totals if item_id in order),
        key=lambda item_id: (-totals[item_id][0], order[item_id][0]),
    )
    ranked, rank, previous = [], 0, None
    for index, item_id in enumerate(rows):
        votes, people = totals[item_id]
        if votes != previous:
            rank, previous = index + 1, votes
        item = order[item_id][1]
        ranked.append(Ranked(rank, item_id, title_of(item), votes, people, item))
    return ranked


@transaction.atomic
def reveal_votes(step: SessionStep) -> None:
    session = locked(step.session)
    step = SessionStep.objects.select_for_update().get(pk=step.pk)
    if step.kind != StepKind.VOTE or step.session_id != session.pk:
        raise SessionError("Only a vote step reveals votes.")
    if step.revealed:
        return
    step.revealed_at = timezone.now()
    step.save(update_fields=["revealed_at"])
    changed(session)
