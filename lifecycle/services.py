"""Life-cycle workflows: the event map."""

from __future__ import annotations

from django.db import transaction

from .models import SUGGESTED_STAGE, EventMapping, Stage


def suggest_stage(event_type: str, stages: list[Stage]) -> Stage | None:
    """The stage an event type most likely belongs to, from its name (purchase → Buy)."""
    by_name = {stage.name.lower(): stage for stage in stages}
    name = event_type.lower()
    guess = SUGGESTED_STAGE.get(name)
    if guess is None:
        for known, stage_name in SUGGESTED_STAGE.items():
            if known in name or name in known:
                guess = stage_name
                break
    return by_name.get(guess.lower()) if guess else None


def unmapped_event_types(plan_id: int, event_types: list[str]) -> list[str]:
    mapped = set(
        EventMapping.objects.filter(plan_id=plan_id, event_type__in=event_types).values_list(
            "event_type", flat=True
        )
    )
    return sorted(t for t in set(event_types) if t not in mapped)


@transaction.atomic
def map_event_types(plan_id: int, choices: dict[str, Stage | None]) -> list[EventMapping]:
    """Put each event type on its stage, replacing an earlier choice; None takes it off the map
    (stage metrics stop counting it). The mappings saved come back."""
    saved = []
    for event_type, stage in choices.items():
        name = event_type.strip().lower()
        if stage is None:
            EventMapping.objects.filter(plan_id=plan_id, event_type=name).delete()
            continue
        mapping, _ = EventMapping.objects.update_or_create(
            plan_id=plan_id, event_type=name, defaults={"stage": stage}
        )
        saved.append(mapping)
    return saved
