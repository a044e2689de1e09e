"""The plan's data version: what is computed from its events (histories, lifetime value, figures)
is kept per version, and goes stale when the events or what they mean change."""

from __future__ import annotations

from django.db.models import F

from planning.models import Plan


def data_changed(plan_id: int) -> None:
    """The plan's events, event map or data source changed: what was computed from them is out
    of date."""
    Plan.objects.filter(pk=plan_id).update(data_version=F("data_version") + 1)
