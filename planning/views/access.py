"""Who may see and change a plan: the one access rule behind every plan URL, planning's and
insights'. It answers in HTTP (404 for anyone who is not a member, 403 for a write they may not
make), so it lives with the views, as healthchecks' `_get_project_for_user` does; services take
the plan and the member they are given, and raise only errors of their own."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.http import Http404

from ..models import Membership, Plan
from ..services import User


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
