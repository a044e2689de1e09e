"""Plan health (DOMAIN §10): what rests on a broken, at-risk or drifting assumption (its blast
radius), and a plan's assumptions counted by verdict with what changed since the last digest."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.db.models import (
    BooleanField,
    Count,
    DateTimeField,
    ExpressionWrapper,
    Max,
    OuterRef,
    Q,
    Subquery,
    Value,
)
from django.db.models.functions import Coalesce
from django.db.models.query import prefetch_related_objects

from lifecycle.models import EventMapping, Stage
from planning.models import (
    VERDICTS,
    Assumption,
    AssumptionStatus,
    BTInitiative,
    Period,
    Plan,
    StrategicChoice,
)

from ..metrics import latest_event_at
from ..metrics.sql import EVENTS, fetchall, moment
from ..models import AssumptionRun, PlanRetest
from ..periods import MICROSECOND, last_moment, midnight, next_period_start, period_start
from .sources import plan_engine

# The verdicts that give an assumption a blast radius (besides drifting).
ALARMING = {AssumptionStatus.BROKEN, AssumptionStatus.AT_RISK}


# --- periods (DOMAIN §8): calendar months or ISO weeks, in UTC ---------------------------------


@dataclass(frozen=True)
class PlanPeriod:
    """One period of a plan: from `start` (included) to `end` (excluded)."""

    start: dt.datetime
    end: dt.datetime
    kind: str

    @property
    def label(self) -> str:
        if self.kind == Period.WEEK:
            return f"the week of {self.start.day} {self.start:%b %Y}"
        return f"{self.start:%B %Y}"


def last_complete_period(as_of: dt.datetime, kind: str) -> PlanPeriod:
    """The latest period that as_of does not cut short: the one holding as_of when as_of is its
    last moment, else the one before (the period holding as_of is partial)."""
    start = period_start(as_of, kind)
    if as_of == last_moment(start, kind):
        return PlanPeriod(midnight(start), midnight(next_period_start(start, kind)), kind)
    before = period_start(midnight(start) - MICROSECOND, kind)
    return PlanPeriod(midnight(before), midnight(start), kind)


# --- blast radius ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class StageReach:
    stage: Stage
    customers: int | None  # None: the plan has no data to count


@dataclass(frozen=True)
class BlastRadius:
    """What a broken, at-risk or drifting assumption puts at stake (DOMAIN §10)."""

    assumption: Assumption
    choices: list[StrategicChoice]  # the choices resting on it
    stages: list[StageReach]  # their stages, each with the customers it reached
    initiatives: list[BTInitiative]  # the BT initiatives serving those choices
    cost: Decimal | None  # their summed cost estimate; None: no initiative has one
    unestimated: int  # initiatives without a cost estimate
    period: PlanPeriod | None  # the last complete period; None: no data yet
    customers: int | None  # distinct customers reached in any of the stages in that period

    @property
    def reasons(self) -> list[str]:
        """Why it matters, in words: “broken”, “at risk”, “drifting”."""
        words = []
        if self.assumption.status in ALARMING:
            words.append(self.assumption.get_status_display().lower())
        if self.assumption.is_drifting:
            words.append("drifting")
        return words


def has_blast_radius(assumption: Assumption) -> bool:
    return assumption.status in ALARMING or assumption.is_drifting


def blast_radius(assumption: Assumption) -> BlastRadius:
    return blast_radii([assumption])[assumption.pk]


def blast_radii(assumptions: Iterable[Assumption]) -> dict[int, BlastRadius]:
    """The blast radius of each assumption (of one plan), by its id, in a fixed number of
    queries: the choices' stages and initiatives, the plan's as_of, and one statement for the
    customers reached in every stage of every choice."""
    assumptions = list(assumptions)
    if not assumptions:
        return {}
    choices = list({a.choice_id: a.choice for a in assumptions}.values())
    plan_ids = {choice.plan_id for choice in choices}
    if len(plan_ids) != 1:
        raise ValueError("blast_radii takes the assumptions of one plan")
    (plan_id,) = plan_ids
    prefetch_related_objects(choices, "stages", "bt_initiatives")
    with plan_engine(choices[0].plan):  # where the plan's events live (one session for both)
        as_of = latest_event_at(plan_id)
        period = last_complete_period(as_of, choices[0].plan.period) if as_of else None
        reached = _customers_reached(plan_id, choices, period) if period else {}

    by_choice: dict[int, tuple] = {}
    for choice in choices:
        stages = [
            StageReach(stage, reached.get((choice.pk, stage.pk), 0) if period else None)
            for stage in choice.stages.all()  # in the plan's order (Stage.Meta.ordering)
        ]
        initiatives = list(choice.bt_initiatives.all())
        # The initiatives are few and shown one by one: summed here, exactly (SQLite sums its
        # decimals as floating point).
        estimates = [i.cost_estimate for i in initiatives if i.cost_estimate is not None]
        cost = sum(estimates, Decimal(0)) if estimates else None
        customers = reached.get((choice.pk, None), 0) if period else None
        by_choice[choice.pk] = (
            stages,
            initiatives,
            cost,
            len(initiatives) - len(estimates),
            customers,
        )
    radii = {}
    for assumption in assumptions:
        stages, initiatives, cost, unestimated, customers = by_choice[assumption.choice_id]
        radii[assumption.pk] = BlastRadius(
            assumption=assumption,
            choices=[assumption.choice],
            stages=stages,
            initiatives=initiatives,
            cost=cost,
            unestimated=unestimated,
            period=period,
            customers=customers,
        )
    return radii


def _customers_reached(
    plan_id: int, choices: list[StrategicChoice], period: PlanPeriod
) -> dict[tuple[int, int | None], int]:
    """Distinct customers with an event in `period` whose type the plan's event map puts in a
    stage of the choice: per (choice, stage), and per (choice, None) over all its stages.

    One query for the event map, then one statement over the events alone, a count per stage and
    per choice: it runs where the plan's events live (a Spark cluster has no event map to join)."""
    types_of: dict[int, list[str]] = {}
    for event_type, stage_id in EventMapping.objects.filter(plan_id=plan_id).values_list(
        "event_type", "stage_id"
    ):
        types_of.setdefault(stage_id, []).append(event_type)
    groups: list[tuple[tuple[int, int | None], list[str]]] = []
    for choice in choices:
        stage_ids = [stage.pk for stage in choice.stages.all()]
        groups += [((choice.pk, pk), types_of.get(pk, [])) for pk in stage_ids]
        groups.append(((choice.pk, None), [t for pk in stage_ids for t in types_of.get(pk, [])]))
    counted = [(key, types) for key, types in groups if types]
    reached = {key: 0 for key, _ in groups}
    if not counted:
        return reached
    columns: list[str] = []
    params: list[Any] = []
    for _, types in counted:
        columns.append(
            f"COUNT(DISTINCT CASE WHEN e.event_type IN ({', '.join(['%s'] * len(types))}) "
            "THEN e.customer_id END)"
        )
        params += types
    every = sorted({t for types in types_of.values() for t in types})
    statement = f"""
        SELECT {", ".join(columns)} FROM {EVENTS} e
        WHERE e.plan_id = %s AND e.occurred_at >= %s AND e.occurred_at < %s
          AND e.event_type IN ({", ".join(["%s"] * len(every))})
    """  # noqa: S608 (fixed fragments, values as parameters)
    params += [plan_id, moment(period.start), moment(period.end), *every]
    (row,) = fetchall(statement, params)
    reached.update({key: int(n or 0) for (key, _), n in zip(counted, row, strict=True)})
    return reached


# --- plan health ------------------------------------------------------------------------------


@dataclass(frozen=True)
class VerdictCount:
    verdict: str  # the board's verdict filter (?verdict=…) that shows them
    count: int
    label: str  # “2 at risk”


@dataclass(frozen=True)
class PlanHealth:
    """A plan's assumptions counted by verdict, and what changed since a moment."""

    total: int = 0
    counts: list[VerdictCount] = field(default_factory=list)
    since: dt.datetime | None = None  # the moment compared with; None: nothing to compare
    since_digest: bool = False  # the moment is the last digest's
    changes: list[VerdictCount] = field(default_factory=list)


# Counted, in this order, each a verdict of the board's filter.
COUNTED = ["broken", "at_risk", "drifting", "holds", "insufficient_data", "untested", "error"]
COUNT_WORDS = {
    "broken": "broken",
    "at_risk": "at risk",
    "drifting": "drifting",
    "holds": "holds",
    "insufficient_data": "insufficient data",
    "untested": "untested",
    "error": "in error",
}
# What changed since the moment: (verdict, words for one, words for several, and what was not
# so then). An assumption now of that verdict counts when the state its latest run at or before
# the moment left (untested: no run) was not.
CHANGES = [
    ("broken", "newly broken", "newly broken", ~Q(then_status=AssumptionStatus.BROKEN)),
    ("at_risk", "newly at risk", "newly at risk", ~Q(then_status=AssumptionStatus.AT_RISK)),
    ("drifting", "started drifting", "started drifting", Q(then_drifting=False)),
    ("holds", "now holds", "now hold", ~Q(then_status=AssumptionStatus.HOLDS)),
]


def plan_health(plan: Plan, since: dt.datetime | None = None) -> PlanHealth:
    """The plan's health; what changed since `since`, by default since the last digest."""
    return plans_health([plan.pk], since=since)[plan.pk]


def plans_health(
    plan_ids: Iterable[int], since: dt.datetime | None = None
) -> dict[int, PlanHealth]:
    """Each plan's health, by plan id, in one statement however many plans."""
    plan_ids = list(plan_ids)
    health = {plan_id: PlanHealth() for plan_id in plan_ids}
    for row in _health_rows(plan_ids, since):
        moment = row["latest_since"]
        health[row["choice__plan_id"]] = PlanHealth(
            total=row["total"],
            counts=[
                VerdictCount(name, row[name], f"{row[name]} {COUNT_WORDS[name]}")
                for name in COUNTED
                if row[name]
            ],
            since=moment,
            since_digest=since is None,
            changes=[
                VerdictCount(verdict, n, f"{n} {one if n == 1 else several}")
                for verdict, one, several, _ in CHANGES
                if (n := row[f"changed_{verdict}"])
            ]
            if moment
            else [],
        )
    return health


def _health_rows(plan_ids: list[int], since: dt.datetime | None) -> list[dict[str, Any]]:
    """Per plan: its assumptions counted by verdict now, and by verdict gained since the moment
    (`since`, else the plan's last digest), with that moment."""
    moment: Value | Subquery
    if since is not None:
        moment = Value(since, output_field=DateTimeField())
    else:
        moment = Subquery(
            PlanRetest.objects.filter(
                plan_id=OuterRef("choice__plan_id"), digests_queued_at__isnull=False
            )
            .order_by("-digests_queued_at", "-id")
            .values("digests_queued_at")[:1]
        )
    then = AssumptionRun.objects.filter(
        assumption_id=OuterRef("pk"), created_at__lte=OuterRef("since")
    ).order_by("-created_at", "-id")
    drifting = ExpressionWrapper(Q(drift__isnull=False), output_field=BooleanField())
    aggregates = {name: Count("pk", filter=VERDICTS[name][1]) for name in COUNTED}
    aggregates |= {
        f"changed_{verdict}": Count("pk", filter=VERDICTS[verdict][1] & condition)
        for verdict, _, _, condition in CHANGES
    }
    rows = (
        Assumption.objects.filter(choice__plan_id__in=plan_ids)
        .annotate(since=moment)
        .annotate(
            then_status=Coalesce(
                Subquery(then.values("status")[:1]), Value(AssumptionStatus.UNTESTED.value)
            ),
            then_drifting=Coalesce(
                Subquery(then.annotate(drifting=drifting).values("drifting")[:1]),
                Value(False),
            ),
        )
        .values("choice__plan_id")
        .annotate(total=Count("pk"), latest_since=Max("since"), **aggregates)
        .order_by()
    )
    return [dict(row) for row in rows]
