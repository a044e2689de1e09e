"""Import: make the database say what a checked plan file says, in one transaction."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db import models, transaction

from lifecycle.models import EventMapping, Stage
from planning.models import (
    Activity,
    Assumption,
    AssumptionStatus,
    BTInitiative,
    Membership,
    Plan,
    StrategicChoice,
)
from planning.services import User, create_plan, record_activity

from .exporting import export_plan
from .reading import (
    AssumptionSpec,
    ChoiceSpec,
    InitiativeSpec,
    MemberSpec,
    MetricTestSpec,
    PlanSpec,
    read_plan,
)

TEST_FIELDS = Assumption.TEST_FIELDS
# A verdict is about the test it ran; once the test changes, the assumption awaits a re-test.
NO_VERDICT = {
    "status": AssumptionStatus.UNTESTED,
    "observed": None,
    "sample_size": None,
    "ci_low": None,
    "ci_high": None,
    "last_run_at": None,
}


def import_plan(data: dict[str, Any], *, actor: User | None = None) -> tuple[Plan, bool]:
    """Create the plan the file describes, or make the plan with its slug equal to the file.

    Returns (plan, created). Raises PlanFileError, having written nothing, when the file is wrong.
    """
    spec, users = read_plan(data)
    with transaction.atomic():
        plan = Plan.objects.select_for_update().filter(slug=spec.slug).first()
        created = plan is None
        before = None if plan is None else export_plan(plan)
        plan = _write_plan(plan, spec)
        stages = _sync_stages(plan, spec.stages)
        _sync_event_map(plan, spec.event_map, stages)
        members = _sync_members(plan, spec.members, users)
        choices = _sync_choices(plan, spec.choices, stages, members)
        _sync_initiatives(plan, spec.initiatives, stages, choices)
        after = export_plan(plan)
        # Re-importing the file the plan already equals changes nothing, not even the history.
        if after != before:
            record_activity(
                plan,
                actor,
                Activity.Action.IMPORTED,
                "plan",
                item_id=plan.pk,
                item_label=plan.name,
                before=before,
                after=after,
            )
    plan.refresh_from_db()
    return plan, created


def _save_changes(obj: models.Model, values: dict[str, Any], *, more: bool = False) -> bool:
    """Set the values that differ and save; a changed row's version goes up (live clients see it).

    `more` says something else about the row changed (its many-to-many links). The plan's own
    version is left to record_activity, which bumps it once per change.
    """
    changed = {name: value for name, value in values.items() if getattr(obj, name) != value}
    if not changed and not more:
        return False
    for name, value in changed.items():
        setattr(obj, name, value)
    if hasattr(obj, "version") and not isinstance(obj, Plan):
        obj.version += 1
    obj.save()
    return True


def _write_plan(plan: Plan | None, spec: PlanSpec) -> Plan:
    values = {
        "description": spec.description,
        "retest_cadence": spec.cadence,
        "retest_weekday": spec.weekday,
        "retest_time": spec.time,
        "retest_timezone": spec.timezone,
    }
    if plan is None:
        return create_plan(spec.name, spec.slug, stages=spec.stages, **values)
    _save_changes(plan, {"name": spec.name, **values})
    return plan


def _sync_stages(plan: Plan, names: list[str]) -> dict[str, Stage]:
    """The plan's stages by name. A stage is matched by its name whatever the case; one the file
    no longer names goes, with its event-map lines (a rename cannot be told from a swap)."""
    wanted = {name.lower(): (position, name) for position, name in enumerate(names)}
    existing = {stage.name.lower(): stage for stage in plan.stages.all()}
    plan.stages.exclude(pk__in=[s.pk for key, s in existing.items() if key in wanted]).delete()
    stages: dict[str, Stage] = {}
    for key, (position, name) in wanted.items():
        stage = existing.get(key)
        if stage is None:
            stage = Stage.objects.create(plan=plan, name=name, position=position)
        else:
            _save_changes(stage, {"name": name, "position": position})
        stages[name] = stage
    return stages


def _sync_event_map(plan: Plan, event_map: dict[str, str], stages: dict[str, Stage]) -> None:
    existing = {line.event_type: line for line in plan.event_map.all()}
    stale = [line.pk for event_type, line in existing.items() if event_type not in event_map]
    EventMapping.objects.filter(pk__in=stale).delete()
    for event_type, stage_name in event_map.items():
        line = existing.get(event_type)
        if line is None:
            EventMapping.objects.create(plan=plan, event_type=event_type, stage=stages[stage_name])
        else:
            _save_changes(line, {"stage_id": stages[stage_name].pk})


def _sync_members(
    plan: Plan, specs: list[MemberSpec], users: dict[str, Any]
) -> dict[str, Membership]:
    """Memberships by username. Leaving the plan ends a membership, never the user; a member who
    stays keeps their own settings (e-mail digests), which the file does not carry."""
    wanted = {users[spec.username].pk: spec for spec in specs}
    plan.memberships.exclude(user_id__in=list(wanted)).delete()
    existing = {membership.user_id: membership for membership in plan.memberships.all()}
    memberships: dict[str, Membership] = {}
    for user_id, spec in wanted.items():
        values = {"role": spec.role, "business_unit": spec.business_unit}
        membership = existing.get(user_id)
        if membership is None:
            membership = Membership.objects.create(plan=plan, user_id=user_id, **values)
        else:
            _save_changes(membership, values)
        memberships[spec.username] = membership
    return memberships


def _owner_id(username: str | None, members: dict[str, Membership]) -> int | None:
    return members[username].pk if username is not None else None


def _differ(current: Any, wanted: Sequence[models.Model]) -> bool:
    """Whether a (prefetched) many-to-many relation links other rows than `wanted`."""
    return {item.pk for item in current.all()} != {item.pk for item in wanted}


def _sync_choices(
    plan: Plan,
    specs: list[ChoiceSpec],
    stages: dict[str, Stage],
    members: dict[str, Membership],
) -> dict[str, StrategicChoice]:
    titles = {spec.title for spec in specs}
    plan.choices.exclude(title__in=titles).delete()
    existing = {
        choice.title: choice for choice in plan.choices.prefetch_related("stages", "assumptions")
    }
    choices: dict[str, StrategicChoice] = {}
    for position, spec in enumerate(specs):
        values = {
            "owner_id": _owner_id(spec.owner, members),
            "business_unit": spec.business_unit,
            "horizon": spec.horizon,
            "status": spec.status,
            "rationale": spec.rationale,
            "position": position,
        }
        wanted_stages = [stages[name] for name in spec.stages]
        choice = existing.get(spec.title)
        if choice is None:
            choice = StrategicChoice.objects.create(plan=plan, title=spec.title, **values)
            choice.stages.set(wanted_stages)
        else:
            relinked = _differ(choice.stages, wanted_stages)
            if _save_changes(choice, values, more=relinked) and relinked:
                choice.stages.set(wanted_stages)
        _sync_assumptions(choice, spec.assumptions, members)
        choices[spec.title] = choice
    return choices


def _sync_assumptions(
    choice: StrategicChoice, specs: list[AssumptionSpec], members: dict[str, Membership]
) -> None:
    statements = {spec.statement for spec in specs}
    stale = [a.pk for a in choice.assumptions.all() if a.statement not in statements]
    Assumption.objects.filter(pk__in=stale).delete()
    existing = {a.statement: a for a in choice.assumptions.all() if a.pk not in stale}
    for position, spec in enumerate(specs):
        values = {
            "importance": spec.importance,
            "evidence": spec.evidence,
            "owner_id": _owner_id(spec.owner, members),
            "position": position,
            **_test_values(spec.test),
        }
        assumption = existing.get(spec.statement)
        if assumption is None:
            Assumption.objects.create(choice=choice, statement=spec.statement, **values)
            continue
        if any(getattr(assumption, name) != values[name] for name in TEST_FIELDS):
            values |= NO_VERDICT
        _save_changes(assumption, values)


def _test_values(test: MetricTestSpec | None) -> dict[str, Any]:
    if test is None:
        # Tracked by hand: the model's defaults for every test field.
        return {
            "metric": "",
            "params": {},
            "comparator": "",
            "threshold": None,
            "threshold_high": None,
            "min_sample": 30,
            "segment": "",
            "channel": "",
            "window_days": None,
        }
    return {name: getattr(test, name) for name in TEST_FIELDS}


def _sync_initiatives(
    plan: Plan,
    specs: list[InitiativeSpec],
    stages: dict[str, Stage],
    choices: dict[str, StrategicChoice],
) -> None:
    plan.bt_initiatives.exclude(title__in={spec.title for spec in specs}).delete()
    existing = {
        item.title: item for item in plan.bt_initiatives.prefetch_related("stages", "choices")
    }
    for position, spec in enumerate(specs):
        values = {"cost_estimate": spec.cost_estimate, "status": spec.status, "position": position}
        wanted_stages = [stages[name] for name in spec.stages]
        wanted_choices = [choices[title] for title in spec.choices]
        initiative = existing.get(spec.title)
        if initiative is None:
            initiative = BTInitiative.objects.create(plan=plan, title=spec.title, **values)
            initiative.stages.set(wanted_stages)
            initiative.choices.set(wanted_choices)
            continue
        relinked = _differ(initiative.stages, wanted_stages) or _differ(
            initiative.choices, wanted_choices
        )
        if _save_changes(initiative, values, more=relinked) and relinked:
            initiative.stages.set(wanted_stages)
            initiative.choices.set(wanted_choices)
