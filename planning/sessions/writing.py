"""Private writing, then the reveal (brainstorm steps, DOMAIN §11).

Members write choices or assumptions for the step's stage; until the facilitator reveals the
step, each sees only their own items and how many the room has written. The reveal turns every
item into a plan item owned by its author, created by the editing services like any other (the
author is the activity's actor: it is in the activity, live on every board, revertable). The
facilitator may then merge a duplicate into another item: the duplicate is deleted, as a plan
change (revertable), and the merge is recorded as a decision.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Count
from django.utils import timezone

from ..models import Assumption, Membership, StrategicChoice
from ..models.sessions import (
    MAX_NOTES_PER_MEMBER,
    Decision,
    ItemKind,
    SessionNote,
    SessionStep,
    StepKind,
    WorkshopSession,
)
from ..services import User, create_item, delete_item, label_of
from ..services.editing import NameTaken
from .deciding import record_decision
from .errors import SessionError
from .room import changed, locked, require_step


def _writable(step: SessionStep) -> SessionStep:
    session = locked(step.session)
    step = SessionStep.objects.select_related("stage").get(pk=step.pk)
    step.session = session
    require_step(session, step, StepKind.BRAINSTORM, "Items are written")
    if step.revealed:
        raise SessionError("This step's items are revealed: add more on the board.")
    return step


@transaction.atomic
def add_note(
    step: SessionStep, author: User, text: str, choice: StrategicChoice | None = None
) -> SessionNote:
    step = _writable(step)
    text = " ".join(text.split())
    if step.item_kind == ItemKind.ASSUMPTION:
        if choice is None or choice.plan_id != step.session.plan_id:
            raise SessionError("Pick the strategic choice this assumption rests on.")
    else:
        choice = None
    if SessionNote.objects.filter(step=step, author=author).count() >= MAX_NOTES_PER_MEMBER:
        raise SessionError(f"You have written {MAX_NOTES_PER_MEMBER} items in this step.")
    note = SessionNote(step=step, author=author, text=text, choice=choice)
    note.full_clean(exclude=["step", "author", "choice"])
    note.save()
    changed(step.session)  # the room's count goes up
    return note


@transaction.atomic
def remove_note(note: SessionNote, author: User) -> None:
    step = _writable(note.step)
    if note.author_id != author.pk:
        raise SessionError("You can remove only your own items.")
    note.delete()
    changed(step.session)


@dataclass(frozen=True)
class Revealed:
    created: int
    skipped: list[str]  # items that could not become plan items, and why


@transaction.atomic
def reveal_notes(step: SessionStep, actor: User) -> Revealed:
    """Every item of the step becomes a plan item owned by its author. One whose title the plan
    has already (or a fellow member wrote too) is not created twice: it is reported."""
    step = _writable(step)
    session = step.session
    plan = session.plan
    owners = dict(Membership.objects.filter(plan=plan).values_list("user_id", "pk"))
    created, skipped = 0, []
    for note in step.notes.select_related("author", "choice").order_by("created_at", "id"):
        if note.author_id not in owners:  # left the plan since
            skipped.append(f"“{note.text}”: its author is no longer a member.")
            continue
        try:
            with transaction.atomic():
                item = _create(note, plan, owners[note.author_id])
        except (NameTaken, ValidationError):
            skipped.append(f"“{note.text}”: the plan has this item already.")
            note.merged = True
            note.save(update_fields=["merged"])
            continue
        note.item_id = item.pk
        note.save(update_fields=["item_id"])
        created += 1
    step.revealed_at = timezone.now()
    step.save(update_fields=["revealed_at"])
    changed(session)
    return Revealed(created, skipped)


def _create(note: SessionNote, plan, owner_id: int):
    if note.step.item_kind == ItemKind.ASSUMPTION:
        return create_item(
            "assumption",
            plan,
            note.author,
            {"statement": note.text, "owner": owner_id},
            choice=note.choice,
        )
    stages = [note.step.stage_id] if note.step.stage_id else []
    return create_item(
        "choice", plan, note.author, {"title": note.text, "owner": owner_id, "stages": stages}
    )


@transaction.atomic
def merge_items(
    session: WorkshopSession, step: SessionStep, duplicate_id: int, into_id: int, actor: User
) -> Decision:
    """The facilitator folds a revealed duplicate into another item of the step: the duplicate
    is deleted (a plan change, revertable from the activity) and the merge recorded."""
    session = locked(session)
    if step.session_id != session.pk or not step.revealed:
        raise SessionError("Merge items once the step is revealed.")
    notes = {n.item_id: n for n in step.notes.filter(item_id__in=[duplicate_id, into_id])}
    if duplicate_id == into_id or set(notes) != {duplicate_id, into_id}:
        raise SessionError("Pick two different items of this step.")
    model = Assumption if step.item_kind == ItemKind.ASSUMPTION else StrategicChoice
    items = model.objects.in_bulk([duplicate_id, into_id])
    if len(items) != 2:
        raise SessionError("One of these items is no longer on the plan.")
    duplicate, into = items[duplicate_id], items[into_id]
    delete_item(duplicate, actor)
    notes[duplicate_id].merged = True
    notes[duplicate_id].save(update_fields=["merged"])
    detail = f"“{label_of(duplicate)}” merged into it"
    return record_decision(session, step, into, Decision.Outcome.MERGED, detail, actor)


def room_counts(step: SessionStep) -> tuple[int, int]:
    """What the room sees before the reveal: how many items, from how many members."""
    row = step.notes.aggregate(items=Count("id"), authors=Count("author", distinct=True))
    return row["items"], row["authors"]
