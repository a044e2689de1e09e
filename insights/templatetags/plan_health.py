"""Plan health and blast radius in any template (DOMAIN §10), so that `planning`'s pages show
them without importing `insights`: `{% load plan_health %}{% plan_health plan %}`."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django import template

from planning.models import Assumption, Plan

from ..services.health import (
    BlastRadius,
    PlanHealth,
    has_blast_radius,
)
from ..services.health import (
    blast_radius as compute_blast_radius,
)
from ..services.health import (
    plan_health as compute_plan_health,
)
from ..services.health import (
    plans_health as compute_plans_health,
)

register = template.Library()


@register.inclusion_tag("insights/_plan_health.html")
def plan_health(plan: Plan, batch: dict[int, PlanHealth] | None = None) -> dict[str, Any]:
    """The plan's health; from `batch` (see `plans_health`) where a page lists several plans."""
    health = batch.get(plan.pk) if batch is not None else None
    return {"plan": plan, "health": health or compute_plan_health(plan)}


@register.simple_tag
def plans_health(rows: Iterable[Any]) -> dict[int, PlanHealth]:
    """The health of every plan listed, in one query: `{% plans_health rows as batch %}`. A row is
    a plan, or a tuple whose first item is one."""
    plans = [row[0] if isinstance(row, tuple | list) else row for row in rows]
    return compute_plans_health([plan.pk for plan in plans])


@register.simple_tag
def blast_radius(assumption: Assumption) -> BlastRadius | None:
    """The assumption's blast radius when it is broken, at risk or drifting; else None."""
    return compute_blast_radius(assumption) if has_blast_radius(assumption) else None
