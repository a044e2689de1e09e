"""Export: a plan as its plan file, in a fixed number of queries."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.db.models import Prefetch

from lifecycle.models import EventMapping, Stage
from planning.models import (
    METRIC_PARAMS,
    WEEKDAYS,
    Assumption,
    BTInitiative,
    Comparator,
    Membership,
    Plan,
    StrategicChoice,
)

from . import sections
from .reading import ASSUMPTION, CHOICE, INITIATIVE, MEMBER, PLAN, SCHEDULE, TEST, Shape

# Each metric's parameter names, in the order the file lists them.
METRIC_ORDER = {str(metric): tuple(spec) for metric, spec in METRIC_PARAMS.items()}


def export_plan(plan: Plan) -> dict[str, Any]:
    """The plan as its plan file: a fixed number of queries, however big the plan."""
    plan = _plan_for_export(plan.pk)
    time_format = "%H:%M:%S" if plan.retest_time.second else "%H:%M"
    data = _fields(
        PLAN,
        plan,
        stages=[stage.name for stage in plan.stages.all()],
        event_map={line.event_type: line.stage.name for line in plan.event_map.all()},
        members=[_export_member(membership) for membership in plan.memberships.all()],
        retest_schedule=_fields(
            SCHEDULE,
            plan,
            weekday=WEEKDAYS[plan.retest_weekday],
            time=plan.retest_time.strftime(time_format),
        ),
        choices=[_export_choice(choice) for choice in plan.choices.all()],
        bt_initiatives=[_export_initiative(item) for item in plan.bt_initiatives.all()],
    )
    # Optional keys the example file leaves out are written only when set, so that the
    # example round-trips unchanged while nothing of the plan is lost on the way.
    if not plan.description:
        del data["description"]
    for section in sections.sections():
        value = section.export(plan)
        if value is not None:
            data[section.key] = value
    return data


def _plan_for_export(pk: int) -> Plan:
    # A fresh instance each time: a caller's cached relations could be stale after an import.
    in_order = Stage.objects.order_by("position", "id")
    choices_in_order = StrategicChoice.objects.order_by("position", "id")
    related = [section.related for section in sections.sections()]
    return (
        Plan.objects.select_related(*related)
        .prefetch_related(
            Prefetch("stages", queryset=in_order),
            Prefetch(
                "event_map",
                queryset=EventMapping.objects.select_related("stage").order_by(
                    "stage__position", "stage_id", "event_type"
                ),
            ),
            Prefetch(
                "memberships",
                queryset=Membership.objects.select_related("user").order_by("user__username"),
            ),
            Prefetch(
                "choices",
                queryset=choices_in_order.select_related("owner__user").prefetch_related(
                    Prefetch("stages", queryset=in_order),
                    Prefetch(
                        "assumptions",
                        queryset=Assumption.objects.select_related("owner__user").order_by(
                            "position", "id"
                        ),
                    ),
                ),
            ),
            Prefetch(
                "bt_initiatives",
                queryset=BTInitiative.objects.order_by("position", "id").prefetch_related(
                    Prefetch("stages", queryset=in_order),
                    Prefetch("choices", queryset=choices_in_order),
                ),
            ),
        )
        .get(pk=pk)
    )


def _export_member(membership: Membership) -> dict[str, Any]:
    data = {"username": membership.user.get_username(), "role": membership.role}
    if membership.business_unit:
        data["business_unit"] = membership.business_unit
    return _in_order(MEMBER, data)


def _owner_name(owner: Membership | None) -> str | None:
    return owner.user.get_username() if owner is not None else None


def _export_choice(choice: StrategicChoice) -> dict[str, Any]:
    return _fields(
        CHOICE,
        choice,
        stages=[stage.name for stage in choice.stages.all()],
        owner=_owner_name(choice.owner),
        assumptions=[_export_assumption(item) for item in choice.assumptions.all()],
    )


def _export_assumption(assumption: Assumption) -> dict[str, Any]:
    return _fields(
        ASSUMPTION, assumption, owner=_owner_name(assumption.owner), test=_export_test(assumption)
    )


def _export_test(assumption: Assumption) -> dict[str, Any] | None:
    if not assumption.has_test:
        return None
    threshold: Any = _plain_number(assumption.threshold)
    if assumption.comparator == Comparator.BETWEEN:
        threshold = [threshold, _plain_number(assumption.threshold_high)]
    # PostgreSQL's jsonb reorders keys; the file lists params in the metric's own order.
    spec = METRIC_ORDER.get(assumption.metric, ())
    params = dict(assumption.params or {})
    ordered = {name: params.pop(name) for name in spec if name in params} | params
    return _fields(
        TEST,
        assumption,
        params=ordered,
        threshold=threshold,
        segment=assumption.segment or None,
        channel=assumption.channel or None,
    )


def _export_initiative(initiative: BTInitiative) -> dict[str, Any]:
    return _fields(
        INITIATIVE,
        initiative,
        stages=[stage.name for stage in initiative.stages.all()],
        choices=[choice.title for choice in initiative.choices.all()],
        cost_estimate=_plain_number(initiative.cost_estimate),
    )


def _fields(shape: Shape, item: Any, **written: Any) -> dict[str, Any]:
    """Every key of the object, in the file's order: the value `written` gives for it (names
    for relations, nested objects), else its field's value."""
    return {
        key: written[key] if key in written else getattr(item, shape.field(key))
        for key in shape.keys
    }


def _in_order(shape: Shape, data: dict[str, Any]) -> dict[str, Any]:
    return {key: data[key] for key in shape.keys if key in data}


def _plain_number(value: float | Decimal | None) -> int | float | None:
    """Whole numbers as integers, so that 250000 round-trips as 250000, not 250000.0."""
    if value is None:
        return None
    number = float(value)
    # Beyond 2**53 a float's integer digits are noise; leave such numbers as they are.
    if number.is_integer() and abs(number) < 2**53:
        return int(number)
    return number
