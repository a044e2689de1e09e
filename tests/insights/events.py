"""Test events stored straight into a plan, without an import (the import has its own tests)."""

from __future__ import annotations

import itertools
from typing import Any

from insights.models import Event

_occurrence = itertools.count()


def store(plan, rows: list[Any]) -> list[Any]:
    """Store rows as the plan's events, in this order (so later rows get higher ids). A row is
    any test module's `Row`: customer, at, type, value, segment and channel."""
    events = []
    for row in rows:
        content = {
            "customer_id": row.customer,
            "occurred_at": row.at.isoformat(),
            "event_type": row.type,
            "value": None if row.value is None else str(row.value),
            "segment": row.segment,
            "channel": row.channel,
        }
        events.append(
            Event(
                plan=plan,
                customer_id=row.customer,
                occurred_at=row.at,
                event_type=row.type,
                value=row.value,
                segment=row.segment,
                channel=row.channel,
                dedupe_key=Event.identity(None, content, next(_occurrence)),
            )
        )
    Event.objects.bulk_create(events, batch_size=1000)
    return rows
