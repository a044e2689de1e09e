"""Plan health (DOMAIN §10): the blast radius of a broken, at-risk or drifting assumption, and a
plan's assumptions counted by verdict with what changed since the last digest, on the board and
the plan list. Customers reached are checked against a plain-Python reading of §8 and §10."""

from __future__ import annotations

import datetime as dt
import random
import re
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from insights.models import AssumptionRun, Event, PlanRetest
from insights.services.health import blast_radius, last_complete_period, plan_health
from lifecycle.models import EventMapping
from planning.models import Assumption, BTInitiative, Membership, Plan, StrategicChoice
from planning.services import create_plan

pytestmark = pytest.mark.django_db

UTC = dt.UTC
MICRO = dt.timedelta(microseconds=1)
EVENT_MAP = {
    "purchase": "Buy",
    "signup": "Buy",
    "review": "Engage",
    "visit": "Explore",
    "login": "Use",
    "chat": "Ask",
}


def at(*parts: int) -> dt.datetime:
    return dt.datetime(*parts, tzinfo=UTC)


def add_events(plan: Plan, events: list[tuple[str, dt.datetime, str]]) -> None:
    Event.objects.bulk_create(
        Event(
            plan=plan,
            customer_id=customer,
            occurred_at=moment,
            event_type=kind,
            dedupe_key=Event.identity(f"e{n}", {}, 0),
        )
        for n, (customer, moment, kind) in enumerate(events)
    )


def map_events(plan: Plan, event_map: dict[str, str]) -> None:
    stages = {s.name: s for s in plan.stages.all()}
    EventMapping.objects.bulk_create(
        EventMapping(plan=plan, event_type=kind, stage=stages[name])
        for kind, name in event_map.items()
    )


def choice_on(plan: Plan, title: str, stages: list[str], position: int = 0) -> StrategicChoice:
    choice = StrategicChoice.objects.create(plan=plan, title=title, position=position)
    choice.stages.set(plan.stages.filter(name__in=stages))
    return choice


def assumption_of(choice: StrategicChoice, statement: str, **fields) -> Assumption:
    return Assumption.objects.create(choice=choice, statement=statement, **fields)


def loaded(assumption: Assumption) -> Assumption:
    return Assumption.objects.select_related("choice__plan").get(pk=assumption.pk)


# --- the reference: DOMAIN §8 (periods) and §10 (customers reached), in plain Python ------------


def period_key(moment: dt.datetime, period: str) -> tuple[int, int]:
    moment = moment.astimezone(UTC)
    if period == "month":
        return (moment.year, moment.month)
    iso = moment.isocalendar()
    return (iso.year, iso.week)


def reference_reached(
    events: list[tuple[str, dt.datetime, str]], stages: list[str], period: str
) -> tuple[tuple[int, int], dict[str, int], int]:
    """as_of is the latest event; the period holding it is complete only when as_of is its last
    moment; the customers of a stage are those with an event of a type mapped to it in that
    period. Returns the period's key, each stage's count, and the union's."""
    as_of = max(moment for _, moment, _ in events)
    if period_key(as_of + MICRO, period) != period_key(as_of, period):
        last = period_key(as_of, period)
    else:
        day = as_of
        while period_key(day, period) == period_key(as_of, period):
            day -= dt.timedelta(days=1)
        last = period_key(day, period)
    reached = {
        stage: {
            customer
            for customer, moment, kind in events
            if period_key(moment, period) == last and EVENT_MAP.get(kind) == stage
        }
        for stage in stages
    }
    return last, {s: len(c) for s, c in reached.items()}, len(set().union(*reached.values()))


def random_events(seed: int) -> list[tuple[str, dt.datetime, str]]:
    """Three and a half months of events of 60 customers, and events on period boundaries."""
    rng = random.Random(seed)
    kinds = [*EVENT_MAP, "mystery"]  # one type the map leaves out
    start = at(2026, 1, 1)
    span = (at(2026, 4, 20) - start).total_seconds()
    events = [
        (
            f"c{rng.randrange(60):02}",
            start + dt.timedelta(seconds=rng.random() * span),
            rng.choice(kinds),
        )
        for _ in range(900)
    ]
    for moment in [
        at(2026, 3, 1),
        at(2026, 3, 1) - MICRO,
        at(2026, 4, 1),
        at(2026, 4, 1) - MICRO,
        at(2026, 3, 30),  # a Monday: a week starts
        at(2026, 3, 30) - MICRO,
        at(2026, 4, 6) - MICRO,
    ]:
        events += [("edge-buy", moment, "purchase"), ("edge-review", moment, "review")]
        events.append((f"edge-{moment:%m%d%H%M%S%f}", moment, "signup"))
    return events


ENDINGS = {
    # The data ends mid-period: the period before as_of's is the last complete one.
    "partial": None,
    # The data ends on the last moment of March (a Tuesday): March is complete, its week is not.
    "month end": at(2026, 4, 1) - MICRO,
    # … on the last moment of a Sunday: that ISO week is complete, its month is not.
    "week end": at(2026, 4, 6) - MICRO,
}


@pytest.mark.parametrize("period", ["month", "week"])
@pytest.mark.parametrize("ending", list(ENDINGS))
def test_customers_reached_match_a_plain_reading_of_the_domain(plan, period, ending):
    events = random_events(seed=7)
    if ENDINGS[ending] is not None:
        events = [e for e in events if e[1] <= ENDINGS[ending]]
        events.append(("last", ENDINGS[ending], "visit"))
    add_events(plan, events)
    map_events(plan, EVENT_MAP)
    Plan.objects.filter(pk=plan.pk).update(period=period)
    # Buy, Engage and Ask (whose one type nobody used in some periods); not Explore or Use.
    choice = choice_on(plan, "Launch a loyalty subscription", ["Engage", "Buy", "Ask"])
    choice_on(plan, "Grow organic visits", ["Explore", "Use"], position=1)
    broken = assumption_of(choice, "Half buy again", status="broken")

    radius = blast_radius(loaded(broken))

    key, per_stage, union = reference_reached(events, ["Buy", "Ask", "Engage"], period)
    start, end = radius.period.start, radius.period.end  # the period is [start, end)
    assert period_key(start, period) == key == period_key(end - MICRO, period)
    assert key not in {period_key(start - MICRO, period), period_key(end, period)}
    assert [(r.stage.name, r.customers) for r in radius.stages] == [
        (name, per_stage[name])
        for name in ["Buy", "Ask", "Engage"]  # the plan's stage order
    ]
    assert radius.customers == union
    assert 0 < union < sum(per_stage.values())  # customers in two stages are counted once


def test_the_last_complete_period_in_months_and_iso_weeks():
    def period(as_of, kind):
        found = last_complete_period(as_of, kind)
        return found.start, found.end, found.label

    assert period(at(2026, 3, 15, 10), "month") == (
        at(2026, 2, 1),
        at(2026, 3, 1),
        "February 2026",
    )
    assert period(at(2026, 3, 1), "month")[:2] == (at(2026, 2, 1), at(2026, 3, 1))
    assert period(at(2026, 3, 31, 23, 59, 59, 999999), "month")[:2] == (
        at(2026, 3, 1),
        at(2026, 4, 1),
    )
    assert period(at(2026, 1, 10), "month")[:2] == (at(2025, 12, 1), at(2026, 1, 1))
    assert period(at(2026, 12, 31, 23, 59, 59, 999999), "month")[:2] == (
        at(2026, 12, 1),
        at(2027, 1, 1),
    )
    # ISO weeks run Monday to Sunday: 1 January 2026 is a Thursday of week 1, which began on
    # Monday 29 December 2025.
    assert period(at(2026, 1, 1, 8), "week") == (
        at(2025, 12, 22),
        at(2025, 12, 29),
        "the week of 22 Dec 2025",
    )
    assert period(at(2026, 1, 4, 23, 59, 59, 999999), "week")[:2] == (
        at(2025, 12, 29),
        at(2026, 1, 5),
    )
    # Another zone's moment is read in UTC: 00:30 in Paris on 1 April is 31 March in UTC.
    paris = dt.timezone(dt.timedelta(hours=2))
    assert period(dt.datetime(2026, 4, 1, 0, 30, tzinfo=paris), "month")[:2] == (
        at(2026, 2, 1),
        at(2026, 3, 1),
    )


# --- blast radius: choices, stages, initiatives and their cost ----------------------------------


@pytest.fixture
def loyalty(plan):
    choice = choice_on(plan, "Launch a loyalty subscription", ["Buy", "Engage"])
    other = choice_on(plan, "Grow organic visits", ["Explore"], position=1)
    for title, cost, serves, position in [
        ("Subscription billing", Decimal("250000.10"), [choice], 1),
        ("Loyalty app", Decimal("100000.20"), [choice, other], 0),
        ("Perks catalogue", None, [choice], 2),
        ("SEO tooling", Decimal("5000"), [other], 3),
    ]:
        initiative = BTInitiative.objects.create(
            plan=plan, title=title, cost_estimate=cost, position=position
        )
        initiative.choices.set(serves)
    return choice


def test_blast_radius_names_the_choice_its_stages_and_the_initiatives_serving_it(
    plan, loyalty, django_assert_num_queries
):
    map_events(plan, EVENT_MAP)
    add_events(
        plan,
        [
            ("a", at(2026, 2, 3), "purchase"),
            ("a", at(2026, 2, 4), "review"),
            ("b", at(2026, 2, 28, 23, 59, 59, 999999), "signup"),
            ("c", at(2026, 2, 10), "visit"),  # Explore: not a stage of the choice
            ("d", at(2026, 1, 31, 23, 59, 59, 999999), "purchase"),  # January
            ("e", at(2026, 3, 1), "review"),  # March: partial
            ("f", at(2026, 3, 9, 12), "purchase"),  # as_of
        ],
    )
    broken = loaded(assumption_of(loyalty, "Half buy again", status="broken"))

    # stages, initiatives, where the events live, as_of, the event map, customers reached
    with django_assert_num_queries(6):
        radius = blast_radius(broken)

    assert radius.reasons == ["broken"]
    assert [c.title for c in radius.choices] == ["Launch a loyalty subscription"]
    assert [(r.stage.name, r.customers) for r in radius.stages] == [("Buy", 2), ("Engage", 1)]
    assert radius.period.label == "February 2026"
    assert radius.customers == 2
    assert [i.title for i in radius.initiatives] == [
        "Loyalty app",
        "Subscription billing",
        "Perks catalogue",
    ]
    assert radius.cost == Decimal("350000.30")  # exact, on SQLite too
    assert radius.unestimated == 1


def test_a_plan_without_data_has_no_customers_to_count(plan, loyalty):
    drifting = assumption_of(
        loyalty,
        "Members renew",
        status="holds",
        drift_since=dt.date(2026, 8, 1),
        drift_direction="down",
        drift_message="Renewals have been falling since August: 41% → 36%",
    )
    radius = blast_radius(loaded(drifting))
    assert radius.reasons == ["drifting"]
    assert radius.period is None and radius.customers is None
    assert [(r.stage.name, r.customers) for r in radius.stages] == [("Buy", None), ("Engage", None)]


def test_the_assumption_page_shows_the_blast_radius_of_a_broken_or_drifting_one(plan, loyalty, cmo):
    map_events(plan, EVENT_MAP)
    add_events(plan, [("a", at(2026, 2, 3), "purchase"), ("b", at(2026, 3, 2), "visit")])
    broken = assumption_of(loyalty, "Half buy again", status="broken")
    drifting = assumption_of(
        loyalty,
        "Members renew",
        status="holds",
        drift_since=dt.date(2026, 1, 1),
        drift_direction="down",
        drift_message="Renewals have been falling since January: 41% → 36%",
    )
    calm = assumption_of(loyalty, "Members like perks", status="holds")

    def page(assumption) -> str:
        response = cmo.client.get(reverse("insights:assumption", args=[plan.slug, assumption.pk]))
        assert response.status_code == 200
        return " ".join(re.sub(r"<[^>]+>", " ", response.content.decode()).split())

    text = page(broken)
    assert "Blast radius" in text
    assert "What rests on this assumption, broken." in text
    assert "Buy (1 customer) · Engage (0 customers)" in text
    assert "Customers reached in February 2026 1 in these stages" in text
    assert "350,000 estimated in all (1 without an estimate)" in text
    assert "What rests on this assumption, drifting." in page(drifting)
    assert "Blast radius" not in page(calm)


# --- plan health --------------------------------------------------------------------------------

DIGEST = at(2026, 12, 3, 7, 5)


def run(assumption, status, when, drift=None) -> AssumptionRun:
    made = AssumptionRun.objects.create(
        assumption=assumption,
        plan_id=assumption.choice.plan_id,
        status=status,
        previous_status="untested",
        drift=drift,
    )
    AssumptionRun.objects.filter(pk=made.pk).update(created_at=when)
    return made


def drift_fields(since=dt.date(2026, 8, 1), direction="down") -> dict:
    return {
        "drift_since": since,
        "drift_direction": direction,
        "drift_message": "Repeat rate has been falling since August: 41% → 36%",
    }


DRIFT = {"since": "2026-08-01", "direction": "down", "message": "falling"}


@pytest.fixture
def health_plan(plan):
    """Assumptions whose state at the last digest and now differ in every way that counts."""
    choice = choice_on(plan, "Launch a loyalty subscription", ["Buy"])
    other = choice_on(plan, "Grow organic visits", ["Explore"], position=1)
    before, after = DIGEST - dt.timedelta(hours=1), DIGEST + dt.timedelta(days=1)
    made = {}

    def make(name, choice, status, runs, **extra):
        made[name] = assumption_of(choice, name, status=status, **extra)
        for run_status, when, drift in runs:
            run(made[name], run_status, when, drift)

    make("held, now broken", choice, "broken", [("holds", before, None)])
    make("broken all along", choice, "broken", [("broken", before, None)])
    make("first run after", other, "broken", [("broken", after, None)])
    make("broken at the digest", other, "broken", [("broken", DIGEST, None)])
    make("at risk, now drifting", choice, "at_risk", [("at_risk", before, None)], **drift_fields())
    make("drifting all along", other, "holds", [("holds", before, DRIFT)], **drift_fields())
    make(
        "at risk, now holds",
        choice,
        "holds",
        [("at_risk", before, None), ("holds", after, None)],
    )
    make(
        "held before the digest",
        other,
        "holds",
        [("broken", before - dt.timedelta(days=7), None), ("holds", before, None)],
    )
    make("never run", other, "untested", [])
    # The latest digest counts; an older one, and a later re-test without a digest, do not.
    PlanRetest.objects.create(plan=plan, status="done", digests_queued_at=DIGEST)
    PlanRetest.objects.create(
        plan=plan, status="done", digests_queued_at=DIGEST - dt.timedelta(days=7)
    )
    PlanRetest.objects.create(plan=plan, status="done")
    return made


def test_plan_health_counts_verdicts_and_what_changed_since_the_last_digest(
    plan, health_plan, django_assert_num_queries
):
    with django_assert_num_queries(1):
        health = plan_health(plan)
    assert health.total == 9
    assert [(c.verdict, c.count, c.label) for c in health.counts] == [
        ("broken", 4, "4 broken"),
        ("at_risk", 1, "1 at risk"),
        ("drifting", 2, "2 drifting"),
        ("holds", 3, "3 holds"),
        ("untested", 1, "1 untested"),
    ]
    assert health.since == DIGEST and health.since_digest
    assert [(c.verdict, c.label) for c in health.changes] == [
        ("broken", "2 newly broken"),
        ("drifting", "1 started drifting"),
        ("holds", "1 now holds"),
    ]


def test_plan_health_since_a_moment_given(plan, health_plan):
    # Before every run: each assumption was untested then.
    health = plan_health(plan, since=DIGEST - dt.timedelta(days=30))
    assert not health.since_digest
    assert [c.label for c in health.changes] == [
        "4 newly broken",
        "1 newly at risk",
        "2 started drifting",
        "3 now hold",
    ]


def test_without_a_digest_there_is_nothing_to_compare(plan):
    choice = choice_on(plan, "Launch a loyalty subscription", ["Buy"])
    assumption_of(choice, "Half buy again", status="broken")
    PlanRetest.objects.create(plan=plan, status="done")  # a manual re-test: no digest
    health = plan_health(plan)
    assert health.since is None and health.changes == []
    assert [c.label for c in health.counts] == ["1 broken"]


def reference_health(states, digest) -> tuple[dict, dict]:
    """DOMAIN §10 alone: counts by status and drift now; and per verdict, the assumptions of it
    now whose state (status, drifting) at the digest, left by the latest run at or before it,
    was not of it (no run: untested, not drifting)."""
    counts: dict[str, int] = {}
    changes: dict[str, int] = {}
    for status, drifting, runs in states:
        then = [r for r in runs if r[1] <= digest]
        then_status, then_drifting = (
            (max(then, key=lambda r: r[1])[0], max(then, key=lambda r: r[1])[2])
            if then
            else ("untested", False)
        )
        now = {status} | ({"drifting"} if drifting else set())
        before = {then_status} | ({"drifting"} if then_drifting else set())
        for verdict in now:
            counts[verdict] = counts.get(verdict, 0) + 1
            if verdict in {"broken", "at_risk", "holds", "drifting"} and verdict not in before:
                changes[verdict] = changes.get(verdict, 0) + 1
    return counts, changes


def test_plan_health_matches_a_plain_reading_on_random_histories(plan):
    rng = random.Random(11)
    statuses = ["untested", "insufficient_data", "holds", "at_risk", "broken", "error"]
    choice = choice_on(plan, "Launch a loyalty subscription", ["Buy"])
    PlanRetest.objects.create(plan=plan, status="done", digests_queued_at=DIGEST)
    states = []
    for n in range(80):
        status, drifting = rng.choice(statuses), rng.random() < 0.3
        a = assumption_of(choice, f"A{n}", status=status, **(drift_fields() if drifting else {}))
        runs = []
        for _ in range(rng.randrange(4)):
            # Distinct moments a whole minute apart, some of them the digest's very moment.
            when = DIGEST + dt.timedelta(minutes=rng.randrange(-5, 4))
            if any(r[1] == when for r in runs):
                continue
            runs.append((rng.choice(statuses[1:]), when, rng.random() < 0.4))
            run(a, runs[-1][0], when, DRIFT if runs[-1][2] else None)
        states.append((status, drifting, runs))

    counts, changes = reference_health(states, DIGEST)
    health = plan_health(plan)
    assert {c.verdict: c.count for c in health.counts} == counts
    assert {c.verdict: c.count for c in health.changes} == changes


# --- shown on the board and the plan list -------------------------------------------------------


def visible_text(html: str) -> str:
    html = re.sub(r'<span aria-hidden="true">(.*?)</span>', r"\1", html)
    text = " ".join(re.sub(r"<[^>]+>", " ", html).split())
    return re.sub(r" ([.,:])", r"\1", text)


def health_block(html: str) -> str:
    found = re.search(r'<div class="plan-health">(.*?)</div>', html, re.S)
    assert found, "no plan health"
    return found.group(1)


def test_the_board_shows_plan_health_each_count_a_link_to_its_verdict(plan, health_plan, cmo):
    board = reverse("planning:board", args=[plan.slug])
    html = health_block(cmo.client.get(board).content.decode())
    text = " ".join(re.sub(r"<[^>]+>", "", html).split())
    assert "4 broken · 1 at risk · 2 drifting · 3 holds · 1 untested" in text
    assert "Since the digest of 3 Dec: 2 newly broken, 1 started drifting, 1 now holds." in text
    links = re.findall(r'<a [^>]*href="([^"]+)">([^<]+)</a>', html)
    assert len(links) == 8
    for href, label in links:
        assert href.startswith(f"{board}?verdict=")
        shown = cmo.client.get(href).content.decode()
        cards = set(re.findall(r'data-item="(assumption-\d+)"', shown))
        # The board filtered on that verdict shows exactly the assumptions counted.
        count = int(label.split()[0])
        if label.split()[1] in {"newly", "started", "now"}:
            assert len(cards) >= count
        else:
            assert len(cards) == count, (href, label)


def test_the_board_refreshed_by_htmx_keeps_its_health(plan, health_plan, cmo):
    response = cmo.client.get(
        reverse("planning:board", args=[plan.slug]), headers={"HX-Request": "true"}
    )
    html = response.content.decode()
    assert "<html" not in html
    assert "4 broken" in health_block(html)


def test_the_plan_list_shows_each_plans_health_in_a_fixed_number_of_queries(
    plan, health_plan, cmo, django_assert_num_queries
):
    url = reverse("planning:plan_list")
    cmo.client.get(url)  # the session's first read
    with CaptureQueriesContext(connection) as one:
        html = cmo.client.get(url).content.decode()
    assert "4 broken" in health_block(html)
    for n in range(4):
        other = create_plan(f"Plan {n}", f"plan-{n}")
        Membership.objects.create(plan=other, user=cmo.user, role="cmo")
        choice = choice_on(other, f"Choice {n}", ["Buy"])
        for k in range(n + 1):
            assumption_of(choice, f"A{k}", status="at_risk")
        PlanRetest.objects.create(plan=other, status="done", digests_queued_at=DIGEST)

    with django_assert_num_queries(len(one.captured_queries)):
        html = cmo.client.get(url).content.decode()

    blocks = re.findall(r'<li class="plan-card">(.*?)</li>', html, re.S)
    assert len(blocks) == 5
    texts = {re.search(r"<h2>(.*?)</h2>", b).group(1): visible_text(b) for b in blocks}
    assert "4 broken · 1 at risk · 2 drifting · 3 holds · 1 untested" in texts["FY2027 growth plan"]
    for n in range(4):
        expected = f"{n + 1} at risk Since the digest of 3 Dec: {n + 1} newly at risk."
        assert expected in texts[f"Plan {n}"]
    assert 'href="/plans/plan-0/?verdict=at_risk"' in html
