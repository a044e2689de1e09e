"""`{% running_session plan as room %}`: the plan's running workshop session, for the "Back to
the room" link every plan page shows while the room meets."""

from __future__ import annotations

from django import template

from ..models import Plan, SessionStatus, WorkshopSession

register = template.Library()


@register.simple_tag
def running_session(plan: Plan) -> WorkshopSession | None:
    return (
        WorkshopSession.objects.filter(plan=plan, status=SessionStatus.RUNNING)
        .only("pk", "title", "plan_id")
        .first()
    )
