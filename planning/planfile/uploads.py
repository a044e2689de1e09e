"""A plan file uploaded in the web app: a new plan, started by the person who uploads it."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from planning.models import Plan, Role
from planning.services import User

from .importing import import_plan
from .loading import PlanFileError


@transaction.atomic
def start_plan_from_file(user: User, data: dict) -> tuple[Plan, list[str]]:
    """A new plan from a plan file; its creator is added as facilitator if the file omits them.
    A file for a plan that exists already is refused here: updating is the facilitators' job.
    Also gives the user names of the file's other members, who were left out."""
    slug = data.get("slug") if isinstance(data, dict) else None
    if isinstance(slug, str) and Plan.objects.filter(slug=slug).exists():
        raise PlanFileError([f'slug: a plan "{slug}" exists already; change the slug in the file'])
    data, left_out = _only_the_uploader(data, user.get_username())
    if isinstance(data, dict) and not data.get("members"):
        # Joined like any member a file names: by the members' service, with its activity.
        data = {**data, "members": [{"username": user.get_username(), "role": Role.FACILITATOR}]}
    plan, _ = import_plan(data, actor=user)
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
