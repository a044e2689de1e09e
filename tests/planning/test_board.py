"""The plan page: stages → choices → assumptions, and a query count that does not grow."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from planning.models import Assumption, BTInitiative, StrategicChoice

pytestmark = pytest.mark.django_db


def fill_plan(plan, owner, choices: int, assumptions_per_choice: int, initiatives: int) -> None:
    stages = list(plan.stages.all())
    for c in range(choices):
        choice = StrategicChoice.objects.create(
            plan=plan, title=f"Choice {c}", owner=owner, business_unit="Retail", position=c
        )
        choice.stages.set([stages[c % len(stages)], stages[(c + 2) % len(stages)]])
        Assumption.objects.bulk_create(
            Assumption(
                choice=choice,
                statement=f"Assumption {c}.{a}",
                owner=owner,
                metric="repeat_rate",
                params={"event_type": "purchase", "within_days": 90},
                comparator=">=",
                threshold=0.3,
                status="holds" if a % 2 else "broken",
                observed=0.31,
                position=a,
            )
            for a in range(assumptions_per_choice)
        )
    for i in range(initiatives):
        initiative = BTInitiative.objects.create(plan=plan, title=f"Initiative {i}", position=i)
        initiative.stages.set(stages[:2])
        initiative.choices.set(StrategicChoice.objects.filter(plan=plan)[:3])


def board_queries(client, plan) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(reverse("planning:board", args=[plan.slug]))
    assert response.status_code == 200
    return len(queries)


def test_board_shows_stages_choices_and_assumptions_in_order(plan, cmo):
    fill_plan(plan, cmo.membership, choices=3, assumptions_per_choice=2, initiatives=1)
    html = cmo.client.get(reverse("planning:board", args=[plan.slug])).content.decode()
    positions = [
        html.index(f'class="stage-name">{name}</h2>')
        for name in ["Discover", "Explore", "Buy", "Use", "Ask", "Engage"]
    ]
    assert positions == sorted(positions)
    # Choice 0 targets Discover and Buy: a card in each.
    assert html.count('<article class="card choice"') == 6
    assert ">Assumption 0.1</a>" in html
    assert "badge-broken" in html and "badge-holds" in html
    assert "target ≥ 30.0%" in html
    assert "Initiative 0" in html


def test_board_query_count_does_not_grow_with_the_plan(plan, cmo, django_assert_num_queries):
    from planning.models import Membership
    from planning.services import create_plan

    fill_plan(plan, cmo.membership, choices=12, assumptions_per_choice=3, initiatives=4)
    sizes = {"ten times larger": (120, 3, 40), "workshop-sized": (60, 5, 20)}
    counts = {"demo-sized": board_queries(cmo.client, plan)}
    for index, (name, (choices, per_choice, initiatives)) in enumerate(sizes.items()):
        other = create_plan(name, f"big-{index}")
        owner = Membership.objects.create(plan=other, user=cmo.user, role="cmo")
        fill_plan(other, owner, choices, per_choice, initiatives)
        counts[name] = board_queries(cmo.client, other)
    assert len(set(counts.values())) == 1, counts
    # Session, user, membership+plan, stages, choices (+stages, +assumptions), initiatives
    # (+stages, +choices), members and business units for the filters.
    with django_assert_num_queries(12):
        cmo.client.get(reverse("planning:board", args=["big-1"]))


def test_empty_stage_says_so(plan, cmo):
    html = cmo.client.get(reverse("planning:board", args=[plan.slug])).content.decode()
    assert "No strategic choice targets Discover yet." in html
    assert "No initiatives yet." in html
