"""Plans: new plans, a member's plans, the re-test schedule, the activity record. Who may see
and change a plan is the views' answer (views/access.py): services raise no HTTP errors."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Exists, F, OuterRef

from lifecycle.models import DEFAULT_STAGES, Stage

from .. import live
from ..models import (
    Activity,
    Membership,
    Plan,
)


def plans_for_user(user: User):
    if not user.is_authenticated:
        return Plan.objects.none()
    # EXISTS, not a join: a join on memberships would be reused by a later
    # Count("memberships") and count only this user's own membership.
    mine = Membership.objects.filter(plan=OuterRef("pk"), user=user)
    return Plan.objects.filter(Exists(mine)).order_by("name")


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
def save_schedule(plan: Plan, actor: User, cleaned_data: Mapping[str, Any]) -> Plan:
    """Set the plan's re-test schedule from a valid ScheduleForm (its next re-test follows, see
    Plan.save) and record the change in the plan's activity. The saved plan comes back."""
    stored = Plan.objects.select_for_update().get(pk=plan.pk)  # "before" is what was saved
    before = _schedule_of(stored)
    for name in Plan.SCHEDULE_FIELDS:
        setattr(stored, name, cleaned_data[name])
    stored.save(update_fields=[*Plan.SCHEDULE_FIELDS, "next_retest_at", "updated_at"])
    record_activity(
        stored,
        actor,
        "updated",
        "schedule",
        item_id=stored.pk,
        item_label=stored.schedule_display,
        before=before,
        after=_schedule_of(stored),
    )
    return stored


def save_period(plan: Plan, actor: User, period: str) -> Plan:
    """Set the plan's period (month or week) and record it; its assumption histories are drawn
    again per that period (insights follows the plan's save)."""
    stored = Plan.objects.select_for_update().get(pk=plan.pk)
    before = stored.period
    if before == period:
        return stored
    stored.period = period
    stored.save(update_fields=["period", "updated_at"])
    record_activity(
        stored,
        actor,
        "updated",
        "period",
        item_id=stored.pk,
        item_label=stored.get_period_display(),
        before={"period": before},
        after={"period": period},
    )
    return stored


def _schedule_of(plan: Plan) -> dict[str, str]:
    return {name: str(getattr(plan, name)) for name in Plan.SCHEDULE_FIELDS}


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
