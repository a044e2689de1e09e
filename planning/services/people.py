"""People in a plan: members, comments and @mentions. People join through invitations
(services/invitations.py)."""

from __future__ import annotations

import re

from django.contrib.auth.models import User
from django.db import models, transaction

from .. import tasks
from ..jobs import enqueue
from ..models import (
    BU_LEADER_NEEDS_UNIT,
    Comment,
    Membership,
    Plan,
    Role,
)
from .editing import kind_of, label_of
from .plans import record_activity

# --- comments and @mentions ------------------------------------------------------------------

MENTION = re.compile(r"(?<![\w@])@([\w.+-]+)")


def mentioned_members(plan: Plan, body: str) -> list[Membership]:
    """Members named as @username in a comment (a member never mentions themself)."""
    names = {name.lower().rstrip(".") for name in MENTION.findall(body)}
    if not names:
        return []
    members = plan.memberships.select_related("user")
    return [m for m in members if m.user.get_username().lower() in names]


def add_comment(plan: Plan, actor: User, target: models.Model, body: str) -> Comment:
    """A comment on a choice or an assumption; mentioned members are told by e-mail."""
    body = body.strip()
    kind = kind_of(target)
    with transaction.atomic():
        comment = Comment.objects.create(plan=plan, author=actor, body=body, **{kind: target})
        record_activity(
            plan,
            actor,
            "created",
            "comment",
            item_id=comment.pk,
            item_label=f"on “{label_of(target)}”",
            after={"body": body},
        )
        for member in mentioned_members(plan, body):
            if member.user_id != actor.pk and member.user.email:
                enqueue(tasks.send_mention, comment.pk, member.pk)
    return comment


# --- members ------------------------------------------------------------------------------------


class MemberError(Exception):
    pass


# Who is in a plan changes here, each change with its rules and its activity row: for the
# members page (change, remove), a plan file (add, change, remove) and an accepted invitation
# (add, from services/invitations.py).


@transaction.atomic
def add_member(
    plan: Plan,
    actor: User | None,
    user: User,
    role: str,
    business_unit: str = "",
    *,
    invited_by: str | None = None,
) -> Membership:
    """Put a user in the plan: as a plan file names them (DOMAIN §6), or as the invitation
    they accepted says (`invited_by`: the inviter's name, kept in the activity row)."""
    lock_plan_people(plan.pk)
    _needs_unit(role, business_unit)
    membership = Membership.objects.create(
        plan=plan, user=user, role=role, business_unit=business_unit
    )
    after = {"role": membership.role, "business_unit": membership.business_unit}
    if invited_by is not None:
        after["invited_by"] = invited_by
    record_activity(
        plan,
        actor,
        "created",
        "member",
        item_id=membership.pk,
        item_label=str(membership),
        after=after,
    )
    return membership


@transaction.atomic
def change_member(
    membership: Membership, actor: User | None, role: str, business_unit: str
) -> Membership:
    membership = _locked(membership)
    before = {"role": membership.role, "business_unit": membership.business_unit}
    _needs_unit(role, business_unit)
    _keep_a_facilitator(membership, role)
    membership.role, membership.business_unit = role, business_unit
    membership.save(update_fields=["role", "business_unit"])
    record_activity(
        membership.plan,
        actor,
        "updated",
        "member",
        item_id=membership.pk,
        item_label=str(membership),
        before=before,
        after={"role": role, "business_unit": membership.business_unit},
    )
    return membership


@transaction.atomic
def remove_member(membership: Membership, actor: User | None) -> None:
    membership = _locked(membership)
    _keep_a_facilitator(membership, None)
    record_activity(
        membership.plan,
        actor,
        "deleted",
        "member",
        item_id=membership.pk,
        item_label=str(membership),
        before={"role": membership.role, "business_unit": membership.business_unit},
    )
    membership.delete()


def lock_plan_people(plan_id: int) -> None:
    """Changes to who is in a plan take turns, in the caller's transaction: two facilitators
    removing or demoting each other at once would each see the other still facilitating, and
    leave the plan with none. The second one now waits, then reads what the first did."""
    Plan.objects.select_for_update().values_list("pk", flat=True).get(pk=plan_id)


def _locked(membership: Membership) -> Membership:
    lock_plan_people(membership.plan_id)
    current = Membership.objects.select_related("user", "plan").filter(pk=membership.pk).first()
    if current is None:
        raise MemberError(f"{membership.display_name} is no longer a member of this plan.")
    return current


def _needs_unit(role: str, business_unit: str) -> None:
    """A BU leader names the business unit they speak for (DOMAIN §1)."""
    if role == Role.BU_LEADER and not business_unit.strip():
        raise MemberError(BU_LEADER_NEEDS_UNIT)


def _keep_a_facilitator(membership: Membership, new_role: str | None) -> None:
    """A plan always keeps someone who can manage it."""
    if membership.role != "facilitator" or new_role == "facilitator":
        return
    others = Membership.objects.filter(plan_id=membership.plan_id, role="facilitator").exclude(
        pk=membership.pk
    )
    if not others.exists():
        raise MemberError(
            "A plan needs at least one facilitator; make someone else facilitator first."
        )
