"""The plan page: stages → choices → assumptions, and a query count that does not grow."""

from __future__ import annotations

import datetime as dt
import re

import pytest
import time_machine
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
    # Each choice once: choice 0 targets Discover and Buy, its card is in Discover (the first)
    # with Buy as a chip, and Buy links back to it.
    assert html.count('<article class="card choice"') == 3
    discover, buy = plan.stages.get(name="Discover"), plan.stages.get(name="Buy")
    card = html[html.index('<article class="card choice"') :]
    card = card[: card.index("</header>")]
    assert 'id="choice-' in card and f"-in-{discover.pk}" in card
    assert f'<a class="stage-chip" href="#stage-{buy.pk}">Buy</a>' in card
    buy_column = html[html.index(f'id="stage-{buy.pk}"') :]
    assert "Also targets Buy" in buy_column[: buy_column.index("</section>")]
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
    # (+stages, +choices), members and business units for the filters, the plan's health, and
    # the stage strip (its figures cached per data version; a cold cache reads them: +2) and
    # where the plan's events live (imported, or a Spark source whose figures are kept a while),
    # and the running workshop session (for "Back to the room").
    with django_assert_num_queries(16):
        cmo.client.get(reverse("planning:board", args=["big-1"]))


def test_empty_stage_says_so(plan, cmo):
    html = cmo.client.get(reverse("planning:board", args=[plan.slug])).content.decode()
    assert "No strategic choice targets Discover yet." in html
    assert "No initiatives yet." in html


# --- the assumption verdict filter and the drift arrow (DOMAIN §10) -----------------------------


@pytest.fixture
def verdicts(plan):
    """Four choices whose assumptions have every verdict; B drifts while it holds."""
    stages = list(plan.stages.all())
    layout = {
        "Loyalty": [("A broken", "broken", None), ("B holds, drifting", "holds", "down")],
        "Visits": [("C at risk", "at_risk", None), ("D untested", "untested", None)],
        "Support": [("E too few", "insufficient_data", None), ("G failed", "error", None)],
        "Referrals": [("F holds", "holds", None)],
    }
    for position, (title, assumptions) in enumerate(layout.items()):
        choice = StrategicChoice.objects.create(plan=plan, title=title, position=position)
        choice.stages.set([stages[position]])
        for index, (statement, status, drift) in enumerate(assumptions):
            Assumption.objects.create(
                choice=choice,
                statement=statement,
                status=status,
                position=index,
                drift_since=dt.date(2026, 8, 1) if drift else None,
                drift_direction=drift or "",
                drift_message="Repeat rate has been falling since August: 41% → 36%"
                if drift
                else "",
            )
    return layout


def shown(html: str) -> dict[str, list[str]]:
    """Each choice card's title and the statements of its assumptions, as the board shows them."""
    cards = re.findall(r'<article class="card choice".*?<h3[^>]*>(.*?)</h3>(.*?)</ul>', html, re.S)
    return {title: re.findall(r'-text" href="[^"]+">(.*?)</a>', body) for title, body in cards}


@pytest.mark.parametrize(
    ("verdict", "expected"),
    [
        ("broken", {"Loyalty": ["A broken"]}),
        ("at_risk", {"Visits": ["C at risk"]}),
        ("drifting", {"Loyalty": ["B holds, drifting"]}),
        ("insufficient_data", {"Support": ["E too few"]}),
        ("untested", {"Visits": ["D untested"]}),
        ("holds", {"Loyalty": ["B holds, drifting"], "Referrals": ["F holds"]}),
        ("error", {"Support": ["G failed"]}),
    ],
)
def test_the_verdict_filter_shows_choices_with_such_an_assumption_and_only_those(
    plan, cmo, verdicts, verdict, expected
):
    url = reverse("planning:board", args=[plan.slug])
    html = cmo.client.get(url, {"verdict": verdict}).content.decode()
    assert shown(html) == expected
    assert f'<option value="{verdict}" selected>' in html
    assert "Clear filters" in html
    # The same through htmx (the live board re-fetches itself with its filters): a fragment.
    fragment = cmo.client.get(url, {"verdict": verdict}, headers={"HX-Request": "true"})
    assert "<html" not in fragment.content.decode()
    assert shown(fragment.content.decode()) == expected


def test_the_verdict_filter_combines_with_the_others_and_ignores_what_it_does_not_know(
    plan, cmo, verdicts
):
    url = reverse("planning:board", args=[plan.slug])
    everything = shown(cmo.client.get(url).content.decode())
    assert everything == {title: [s for s, _, _ in rows] for title, rows in verdicts.items()}
    StrategicChoice.objects.filter(title="Referrals").update(status="adopted")
    html = cmo.client.get(url, {"verdict": "holds", "status": "adopted"}).content.decode()
    assert shown(html) == {"Referrals": ["F holds"]}
    unknown = cmo.client.get(url, {"verdict": "doomed"}).content.decode()
    assert shown(unknown) == everything
    assert "Clear filters" not in unknown


@time_machine.travel(dt.datetime(2026, 12, 4, 9, 0, tzinfo=dt.UTC), tick=False)
def test_a_drifting_assumption_shows_an_arrow_and_since_when_in_words(plan, cmo, verdicts):
    drifting = Assumption.objects.get(statement="B holds, drifting")
    url = reverse("planning:board", args=[plan.slug])
    html = cmo.client.get(url).content.decode()
    arrow = '<span aria-hidden="true">↘</span> drifting since August</p>'
    assert html.count(arrow) == 1
    assert 'title="Repeat rate has been falling since August: 41% → 36%"' in html
    assert html.count("drifting since") == 1  # the others do not drift

    Assumption.objects.filter(pk=drifting.pk).update(
        drift_direction="up", drift_since=dt.date(2025, 11, 1)
    )
    html = cmo.client.get(url).content.decode()
    assert '<span aria-hidden="true">↗</span> drifting since November 2025</p>' in html

    # The card as the live board re-fetches it after a re-test keeps its arrow.
    card = cmo.client.get(
        reverse("planning:assumption", args=[plan.slug, drifting.pk]),
        {"in": drifting.choice.stages.get().pk},
        headers={"HX-Request": "true"},
    ).content.decode()
    assert card.strip().startswith('<article class="assumption"')
    assert '<span aria-hidden="true">↗</span> drifting since November 2025</p>' in card

    # A weekly plan says which week.
    plan.period = "week"
    plan.save()
    Assumption.objects.filter(pk=drifting.pk).update(drift_since=dt.date(2026, 8, 3))
    html = cmo.client.get(url).content.decode()
    assert '<span aria-hidden="true">↗</span> drifting since 3 Aug</p>' in html
