"""`{% running_session plan here as room %}`: the plan's running workshop session, for the "Back
to the room" link every plan page shows while the room meets. `here` is the session the page
shows, if any (the room's own page): when it is the one running, it is the answer, as its view
read it."""

from __future__ import annotations

from django import template

from ..models import Plan, SessionStatus, WorkshopSession

register = template.Library()


@register.simple_tag
def running_session(plan: Plan, here: object = None) -> WorkshopSession | None:
    if (
        isinstance(here, WorkshopSession)
        and here.plan_id == plan.pk
        and here.status == SessionStatus.RUNNING
    ):
        return here
    return (
        WorkshopSession.objects.filter(plan=plan, status=SessionStatus.RUNNING)
        .only("pk", "title", "plan_id")
        .first()
    )
