"""Presence: who has a plan's board open, and what each is editing.

A row per open board, made by its stream and gone with it; one statement per web process
refreshes its boards' rows every heartbeat, and rows no process refreshes (a process that died)
expire after PRESENCE_TTL.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db import transaction
from django.utils import timezone

from ..models import Membership, Presence, Role, display_name
from .signals import publish

PRESENCE_TTL = dt.timedelta(seconds=45)


def open_presence(plan_id: int, user_id: int, connection: str) -> None:
    """A board opened: its presence row lives as long as its stream."""
    Presence.objects.create(
        plan_id=plan_id, user_id=user_id, connection=connection, last_seen=timezone.now()
    )


def touch_presence(plan_id: int, user_id: int, connection: str, editing: str | None = None) -> bool:
    """Say what this open board edits now. False, and nothing written, when the connection is
    not one of this person's open boards on this plan. Only a real change signals the others."""
    rows = Presence.objects.filter(connection=connection, plan_id=plan_id, user_id=user_id)
    if editing is None:
        return bool(rows.update(last_seen=timezone.now()))
    editing = editing[:80]
    if rows.exclude(editing=editing).update(editing=editing, last_seen=timezone.now()):
        transaction.on_commit(lambda: publish(plan_id))
        return True
    return rows.exists()


def leave_presence(plan_id: int, connection: str) -> None:
    Presence.objects.filter(connection=connection).delete()
    publish(plan_id)


def refresh_presence(connections: list[str]) -> list[int]:
    """One statement for every board this process holds open, then the rows no process keeps
    alive any more (a process that died) go; the plans they were on, to signal."""
    now = timezone.now()
    if connections:
        Presence.objects.filter(connection__in=connections).update(last_seen=now)
    expired = Presence.objects.filter(last_seen__lt=now - PRESENCE_TTL)
    plans = sorted(set(expired.values_list("plan_id", flat=True)))
    if plans:
        expired.delete()
    return plans


def present(plan_id: int) -> list[dict[str, Any]]:
    """Who has the plan open (one entry per person), and what each is editing."""
    since = timezone.now() - PRESENCE_TTL
    rows = (
        Presence.objects.filter(plan_id=plan_id, last_seen__gte=since)
        .select_related("user")
        .order_by("user__first_name", "user_id", "id")
    )
    roles = dict(Membership.objects.filter(plan_id=plan_id).values_list("user_id", "role"))
    people: dict[int, dict[str, Any]] = {}
    for row in rows:
        if row.user_id not in roles:  # removed from the plan; their board is closing
            continue
        person = people.setdefault(
            row.user_id,
            {
                "id": row.user_id,
                "name": display_name(row.user),
                "role": _role_label(roles.get(row.user_id, "")),
                "editing": [],
            },
        )
        if row.editing:
            person["editing"].append(row.editing)
    return list(people.values())


def _role_label(role: str) -> str:
    return Role(role).label if role in Role.values else ""
