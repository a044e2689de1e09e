"""Plans and access: who may see and change a plan, new plans, the activity record."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import F
from django.http import Http404

from lifecycle.models import DEFAULT_STAGES, Stage

from .. import live
from ..models import (
    Activity,
    Membership,
    Plan,
)

User = AbstractBaseUser | AnonymousUser


def get_plan_for_user(user: User, slug: str) -> tuple[Plan, Membership]:
    """The plan and the user's membership in it; 404 for anyone who is not a member.

    Every plan URL goes through here. Outsiders learn nothing, not even that the plan exists.
    """
    if not user.is_authenticated:
        raise Http404("No such plan")
    membership = (
        Membership.objects.select_related("plan", "user").filter(plan__slug=slug, user=user).first()
    )
    if membership is None:
        raise Http404("No such plan")
    return membership.plan, membership


def require_editor(membership: Membership) -> None:
    """Observers read; every write they attempt is refused."""
    if not membership.can_edit:
        raise PermissionDenied("Observers can read this plan but not change it.")


def require_facilitator(membership: Membership) -> None:
    if not membership.can_manage:
        raise PermissionDenied("Only a facilitator can change this.")


def plans_for_user(user: User):
    if not user.is_authenticated:
        return Plan.objects.none()
    return Plan.objects.filter(memberships__user=user).order_by("name")


@transaction.atomic
def create_plan(name: str, slug: str, *, stages: list[str] | None = None, **fields: Any) -> Plan:
    """A new plan with its life-cycle stages (Forrester's six, in order, unless told otherwise)."""
    plan = Plan.objects.create(name=name, slug=slug, **fields)
    add_stages(plan, DEFAULT_STAGES if stages is None else stages)
    return plan


@transaction.atomic
def start_plan(user: User, name: str, slug: str) -> Plan:
    """A new, empty plan whose creator facilitates it."""
    plan = create_plan(name, slug)
    Membership.objects.create(plan=plan, user=user, role="facilitator")
    record_activity(plan, user, "created", "plan", item_id=plan.pk, item_label=plan.name)
    return plan


@transaction.atomic
def start_plan_from_file(user: User, data: dict) -> tuple[Plan, list[str]]:
    """A new plan from a plan file; its creator is added as facilitator if the file omits them.
    A file for a plan that exists already is refused here: updating is the facilitators' job.
    Also gives the user names of the file's other members, who were left out."""
    from ..planfile import PlanFileError, import_plan

    slug = data.get("slug") if isinstance(data, dict) else None
    if isinstance(slug, str) and Plan.objects.filter(slug=slug).exists():
        raise PlanFileError([f'slug: a plan "{slug}" exists already; change the slug in the file'])
    data, left_out = _only_the_uploader(data, user.get_username())
    plan, _ = import_plan(data, actor=user)
    Membership.objects.get_or_create(plan=plan, user=user, defaults={"role": "facilitator"})
    return plan, left_out


def _only_the_uploader(data: Any, username: str) -> tuple[Any, list[str]]:
    """The file with no member but its uploader, and no owner but them. From the web, a file
    must not put people in a plan (joining is their own act: an invitation they accept), nor
    tell its uploader which user names exist. `manage.py import_plan` (staff) keeps them all."""
    if not isinstance(data, dict) or not isinstance(data.get("members"), list):
        return data, []
    named = [m.get("username") if isinstance(m, dict) else None for m in data["members"]]
    left_out = [name for name in named if isinstance(name, str) and name != username]
    kept = [m for m, name in zip(data["members"], named, strict=True) if name == username]
    data = {**data, "members": kept}
    if isinstance(data.get("choices"), list):
        data["choices"] = [_without_other_owners(c, username) for c in data["choices"]]
    return data, left_out


def _without_other_owners(choice: Any, username: str) -> Any:
    if not isinstance(choice, dict):
        return choice
    choice = {**choice}
    if choice.get("owner") not in (None, username):
        choice["owner"] = None
    if isinstance(choice.get("assumptions"), list):
        choice["assumptions"] = [
            {**a, "owner": None}
            if isinstance(a, dict) and a.get("owner") not in (None, username)
            else a
            for a in choice["assumptions"]
        ]
    return choice


def add_stages(plan: Plan, names: list[str]) -> list[Stage]:
    start = plan.stages.count()
    return Stage.objects.bulk_create(
        Stage(plan=plan, name=name, position=start + index) for index, name in enumerate(names)
    )


def record_activity(
    plan: Plan,
    actor: User | None,
    action: str,
    item_type: str,
    *,
    item_id: int | None = None,
    item_label: str = "",
    before: dict | None = None,
    after: dict | None = None,
) -> Activity:
    """Write one activity row and bump the plan's version, in the caller's transaction; open
    boards hear of it once the transaction commits."""
    Plan.objects.filter(pk=plan.pk).update(version=F("version") + 1)
    live.plan_changed(plan.pk)
    return Activity.objects.create(
        plan=plan,
        actor=actor if actor is not None and actor.is_authenticated else None,
        action=action,
        item_type=item_type,
        item_id=item_id,
        item_label=item_label[:400],
        before=before,
        after=after,
    )
