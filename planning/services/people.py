"""People in a plan: members, comments and @mentions."""

from __future__ import annotations

import re

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import models, transaction

from .. import tasks
from ..models import (
    Comment,
    Membership,
    Plan,
)
from .editing import kind_of, label_of
from .plans import record_activity

User = AbstractBaseUser | AnonymousUser

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
                tasks.send_mention.delay_on_commit(comment.pk, member.pk)
    return comment


# --- members ------------------------------------------------------------------------------------


class MemberError(Exception):
    pass


@transaction.atomic
def add_member(
    plan: Plan,
    actor: User,
    person: str,
    role: str,
    business_unit: str = "",
    *,
    first_name: str = "",
    last_name: str = "",
) -> tuple[Membership, bool]:
    """Add someone by user name or e-mail; an unknown e-mail gets an account (invited: True)."""
    person = person.strip()
    UserModel = get_user_model()
    user = (
        UserModel.objects.filter(email__iexact=person).first()
        if "@" in person
        else UserModel.objects.filter(username__iexact=person).first()
    )
    invited = False
    if user is None:
        if "@" not in person:
            raise MemberError(
                f"No one has the user name “{person}”; use their e-mail to invite them."
            )
        username = _free_username(person.split("@")[0])
        user = UserModel.objects.create_user(
            username=username, email=person, first_name=first_name, last_name=last_name
        )
        invited = True
    if Membership.objects.filter(plan=plan, user=user).exists():
        raise MemberError(f"{user.get_full_name() or user.get_username()} is a member already.")
    membership = Membership.objects.create(
        plan=plan, user=user, role=role, business_unit=business_unit
    )
    record_activity(
        plan,
        actor,
        "created",
        "member",
        item_id=membership.pk,
        item_label=str(membership),
        after={"role": role, "business_unit": business_unit},
    )
    return membership, invited


def _free_username(base: str) -> str:
    base = re.sub(r"[^\w.+-]", "", base)[:140] or "member"
    UserModel = get_user_model()
    name, n = base, 1
    while UserModel.objects.filter(username__iexact=name).exists():
        n += 1
        name = f"{base}{n}"
    return name


@transaction.atomic
def change_member(membership: Membership, actor: User, role: str, business_unit: str) -> None:
    before = {"role": membership.role, "business_unit": membership.business_unit}
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


@transaction.atomic
def remove_member(membership: Membership, actor: User) -> None:
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
