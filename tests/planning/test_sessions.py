"""Workshop sessions (DOMAIN §11) through their pages: the agenda from a template, the room
following the facilitator, the shared timer, private writing and the reveal, dot votes and
their caps, the map, decisions, and who may do what."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse
from django.utils import timezone

from planning.models import (
    Activity,
    Assumption,
    Decision,
    SessionStep,
    SessionVote,
    StepKind,
    StrategicChoice,
    WorkshopSession,
)
from planning.sessions import deciding, room, voting
from planning.sessions.agenda import create_session
from planning.sessions.errors import SessionError

pytestmark = pytest.mark.django_db


def act(persona, session, action, **data):
    url = reverse("planning:session_action", args=[session.plan.slug, session.pk, action])
    return persona.client.post(url, data, HTTP_HX_REQUEST="true")


def room_page(persona, session) -> str:
    url = reverse("planning:session", args=[session.plan.slug, session.pk])
    return persona.client.get(url).content.decode()


def goto(facilitator, session, kind) -> SessionStep:
    step = session.steps.filter(kind=kind).order_by("position").first()
    assert act(facilitator, session, "goto", step=step.pk).status_code == 200
    session.refresh_from_db()
    return step


@pytest.fixture
def workshop(plan, facilitator) -> WorkshopSession:
    session = create_session(
        plan, facilitator.user, title="Q1 workshop", date=dt.date(2027, 1, 12), template="workshop"
    )
    assert act(facilitator, session, "start").status_code == 200
    session.refresh_from_db()
    return session


def test_a_facilitator_creates_a_session_from_a_template(plan, facilitator, cmo):
    url = reverse("planning:sessions", args=[plan.slug])
    assert "Workshop" in cmo.client.get(url).content.decode()
    response = facilitator.client.post(
        url,
        {
            "title": "Planning day",
            "date": "2027-01-12",
            "template": "workshop",
            "votes_per_member": 5,
            "votes_per_item": 3,
        },
    )
    session = WorkshopSession.objects.get(plan=plan)
    assert response.status_code == 302
    kinds = list(session.steps.values_list("kind", flat=True))
    stages = plan.stages.count()
    assert kinds == ["review"] + ["brainstorm"] * stages + [
        "brainstorm",
        "map",
        "vote",
        "decide",
        "wrap_up",
    ]
    # Only a facilitator makes one; a cap above the member's votes is refused in words.
    assert cmo.client.post(url, {"title": "x"}).status_code == 403
    refused = facilitator.client.post(
        url,
        {
            "title": "Bad caps",
            "date": "2027-01-12",
            "template": "review",
            "votes_per_member": 2,
            "votes_per_item": 3,
        },
    )
    assert refused.status_code == 422
    assert "more dots on one item than they have" in refused.content.decode()


def test_the_room_follows_the_facilitator(workshop, facilitator, cmo, observer):
    first = workshop.steps.order_by("position").first()
    assert workshop.current_step_id == first.pk
    revision = workshop.revision
    assert act(facilitator, workshop, "next").status_code == 200
    workshop.refresh_from_db()
    assert workshop.current_step.position == 1 and workshop.revision > revision
    page = room_page(cmo, workshop)
    assert f'data-revision="{workshop.revision}"' in page
    assert workshop.current_step.title in page
    # Members and observers follow; they do not lead.
    for persona in (cmo, observer):
        assert act(persona, workshop, "next").status_code == 403
        assert act(persona, workshop, "timer-start").status_code == 403


def test_one_session_runs_at_a_time(plan, facilitator, workshop):
    other = create_session(
        plan, facilitator.user, title="Other", date=dt.date(2027, 1, 13), template="review"
    )
    response = act(facilitator, other, "start")
    assert response.status_code == 409
    assert "Another session of this plan is running" in response.content.decode()


def test_the_timer_is_held_by_the_server(workshop, facilitator):
    now = timezone.now()
    timebox = workshop.current_step.timebox_minutes * 60
    room.start_timer(workshop, now=now)
    workshop.refresh_from_db()
    assert workshop.timer_ends_at == now + dt.timedelta(seconds=timebox)
    room.pause_timer(workshop, now=now + dt.timedelta(seconds=100))
    workshop.refresh_from_db()
    assert (workshop.timer_ends_at, workshop.timer_left) == (None, timebox - 100)
    room.add_minute(workshop)
    workshop.refresh_from_db()
    assert workshop.timer_left == timebox - 40
    later = now + dt.timedelta(seconds=500)
    room.start_timer(workshop, now=later)
    workshop.refresh_from_db()
    assert workshop.timer_ends_at == later + dt.timedelta(seconds=timebox - 40)
    assert workshop.seconds_left(later + dt.timedelta(seconds=10)) == timebox - 50
    # Moving on makes it idle: the next step shows its own timebox.
    act(facilitator, workshop, "next")
    workshop.refresh_from_db()
    assert (workshop.timer_ends_at, workshop.timer_left) == (None, None)


def test_private_items_are_hidden_until_the_reveal(plan, workshop, facilitator, cmo, cio):
    step = goto(facilitator, workshop, StepKind.BRAINSTORM)
    assert act(cmo, workshop, "note-add", text="Same-day pickup").status_code == 200
    assert act(cio, workshop, "note-add", text="Rental programme").status_code == 200
    cmo_page, cio_page, fac_page = (room_page(p, workshop) for p in (cmo, cio, facilitator))
    assert "Same-day pickup" in cmo_page and "Rental programme" not in cmo_page
    assert "Rental programme" in cio_page and "Same-day pickup" not in cio_page
    assert "Same-day pickup" not in fac_page and "Rental programme" not in fac_page
    assert "<strong>2</strong> items written by 2 members" in fac_page
    before = Activity.objects.filter(plan=plan, item_type="choice").count()
    assert act(cmo, workshop, "reveal").status_code == 403
    assert act(facilitator, workshop, "reveal").status_code == 200
    choices = {c.title: c for c in StrategicChoice.objects.filter(plan=plan)}
    assert choices["Same-day pickup"].owner.user == cmo.user
    assert list(choices["Rental programme"].stages.all()) == [step.stage]
    created = Activity.objects.filter(plan=plan, item_type="choice").order_by("id")[before:]
    assert {(a.action, a.actor_id) for a in created} == {
        ("created", cmo.user.pk),
        ("created", cio.user.pk),
    }
    for persona in (cmo, cio, facilitator):
        page = room_page(persona, workshop)
        assert "Same-day pickup" in page and "Rental programme" in page
    # Revealed: nothing more is written in the step.
    assert act(cmo, workshop, "note-add", text="Late idea").status_code == 409


def test_a_facilitator_merges_a_revealed_duplicate(plan, workshop, facilitator, cmo, cio):
    goto(facilitator, workshop, StepKind.BRAINSTORM)
    act(cmo, workshop, "note-add", text="Click and collect")
    act(cio, workshop, "note-add", text="Click & collect in store")
    act(facilitator, workshop, "reveal")
    keep = StrategicChoice.objects.get(plan=plan, title="Click and collect")
    drop = StrategicChoice.objects.get(plan=plan, title="Click & collect in store")
    step = workshop.steps.get(pk=workshop.current_step_id)
    response = act(facilitator, workshop, "merge", step=step.pk, duplicate=drop.pk, into=keep.pk)
    assert response.status_code == 200
    assert not StrategicChoice.objects.filter(pk=drop.pk).exists()
    assert Decision.objects.get(session=workshop).outcome == "merged"
    deleted = Activity.objects.get(plan=plan, action="deleted", item_id=drop.pk)
    assert deleted.actor == facilitator.user  # revertable from the activity like any delete


@pytest.fixture
def choices(plan):
    return [
        StrategicChoice.objects.create(plan=plan, title=title, position=i)
        for i, title in enumerate(["Loyalty plus", "Rentals", "App relaunch"])
    ]


def test_votes_are_capped_hidden_and_then_ranked(workshop, facilitator, cmo, cio, choices):
    goto(facilitator, workshop, StepKind.VOTE)
    loyalty, rentals, app = choices
    for _ in range(3):
        assert act(cmo, workshop, "vote", item=loyalty.pk).status_code == 200
    over = act(cmo, workshop, "vote", item=loyalty.pk)
    assert over.status_code == 409 and "At most 3 votes on one item" in over.content.decode()
    act(cmo, workshop, "vote", item=rentals.pk)
    last = act(cmo, workshop, "vote", item=app.pk)
    assert "0 votes left" in last.content.decode()
    assert act(cmo, workshop, "vote", item=rentals.pk).status_code == 409  # all 5 used
    assert act(cmo, workshop, "unvote", item=app.pk).status_code == 200
    assert "1 vote left" in room_page(cmo, workshop)
    act(cio, workshop, "vote", item=rentals.pk)
    act(cio, workshop, "vote", item=rentals.pk)
    # Hidden: nobody sees the totals before the reveal.
    page = room_page(cio, workshop)
    assert "Ranking" not in page and 'aria-label="Results"' not in page
    assert 'aria-label="Your votes on Loyalty plus: 0"' in page
    act(facilitator, workshop, "reveal")
    ranked = room_page(cio, workshop)
    assert 'aria-label="Results"' in ranked
    results = ranked[ranked.index('aria-label="Results"') :]
    # Loyalty 3 (Ana's), Rentals 1 + 2 from two members: a tie, in the plan's order; the app
    # lost its only vote.
    assert results.index("Loyalty plus") < results.index("Rentals")
    assert "App relaunch" not in results
    assert "<strong>3</strong> votes from 1 member" in results
    assert "<strong>3</strong> votes from 2 members" in results
    assert results.count('<span class="rank">1</span>') == 2
    # Closed after the reveal.
    assert act(cio, workshop, "vote", item=app.pk).status_code == 409


def test_observers_never_vote(workshop, facilitator, observer, choices):
    goto(facilitator, workshop, StepKind.VOTE)
    response = act(observer, workshop, "vote", item=choices[0].pk)
    assert response.status_code == 403
    assert not SessionVote.objects.exists()
    assert "Vote for" not in room_page(observer, workshop)


def test_a_settled_place_sets_importance_and_evidence(plan, workshop, facilitator, cmo, choices):
    assumption = Assumption.objects.create(
        choice=choices[0], statement="Members renew", importance=3, evidence=3
    )
    goto(facilitator, workshop, StepKind.MAP)
    assert (
        act(cmo, workshop, "place", assumption=assumption.pk, importance=5, evidence=1).status_code
        == 200
    )
    assumption.refresh_from_db()
    assert (assumption.importance, assumption.evidence) == (3, 3)  # a proposal, not yet the plan's
    assert act(cmo, workshop, "settle", assumption=assumption.pk).status_code == 403
    assert act(facilitator, workshop, "settle", assumption=assumption.pk).status_code == 200
    assumption.refresh_from_db()
    assert (assumption.importance, assumption.evidence) == (5, 1)
    entry = Activity.objects.filter(plan=plan, item_type="assumption", action="updated").get()
    assert entry.after == {"importance": 5, "evidence": 1}
    off = act(cmo, workshop, "place", assumption=assumption.pk, importance=6, evidence=1)
    assert off.status_code == 409


def test_decisions_are_plan_changes(plan, workshop, facilitator, cmo, cio, choices):
    goto(facilitator, workshop, StepKind.VOTE)
    act(cmo, workshop, "vote", item=choices[1].pk)
    act(facilitator, workshop, "reveal")
    goto(facilitator, workshop, StepKind.DECIDE)
    page = room_page(facilitator, workshop)
    assert "Adopt Rentals" in page
    assert act(facilitator, workshop, "adopt", choice=choices[1].pk).status_code == 200
    assert act(cmo, workshop, "adopt", choice=choices[1].pk).status_code == 403
    act(
        facilitator, workshop, "owner", kind="choice", choice=choices[1].pk, owner=cio.membership.pk
    )
    choices[1].refresh_from_db()
    assert (choices[1].status, choices[1].owner) == ("adopted", cio.membership)
    outcomes = list(Decision.objects.filter(session=workshop).values_list("outcome", "detail"))
    assert outcomes == [("adopted", ""), ("owner", "Maya Tester")]
    assert Activity.objects.filter(plan=plan, item_type="choice", action="updated").count() == 2


def test_other_pages_offer_the_way_back_to_the_room(plan, workshop, cmo):
    board = cmo.client.get(reverse("planning:board", args=[plan.slug])).content.decode()
    assert "Back to the room" in board
    assert reverse("planning:session", args=[plan.slug, workshop.pk]) in board


def _room_queries(persona, session) -> int:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    url = reverse("planning:session", args=[session.plan.slug, session.pk])
    with CaptureQueriesContext(connection) as captured:
        assert persona.client.get(url).status_code == 200
    return len(captured.captured_queries)


def test_the_room_costs_the_same_queries_however_long_the_agenda_and_the_vote(
    plan, workshop, facilitator, cmo, choices
):
    goto(facilitator, workshop, StepKind.VOTE)
    act(cmo, workshop, "vote", item=choices[0].pk)
    small = [_room_queries(p, workshop) for p in (facilitator, cmo)]
    for i in range(20):
        StrategicChoice.objects.create(plan=plan, title=f"More {i}", position=10 + i)
        SessionStep.objects.create(
            session=workshop, kind=StepKind.REVIEW, title=f"Review {i}", position=50 + i
        )
    for choice in StrategicChoice.objects.filter(plan=plan)[:4]:
        act(cmo, workshop, "vote", item=choice.pk)
    assert [_room_queries(p, workshop) for p in (facilitator, cmo)] == small


def test_a_decide_step_reads_the_vote_it_follows_once(
    plan, workshop, facilitator, cmo, choices, django_assert_num_queries
):
    goto(facilitator, workshop, StepKind.VOTE)
    for item in (choices[2], choices[2], choices[0]):
        act(cmo, workshop, "vote", item=item.pk)
    act(facilitator, workshop, "reveal")
    step = goto(facilitator, workshop, StepKind.DECIDE)
    session = WorkshopSession.objects.get(pk=workshop.pk)
    # The session's steps (where the vote is), the vote's totals, its candidates: once each.
    with django_assert_num_queries(3):
        items = deciding.agenda_items(session, step)
    assert [item.title for item in items] == ["App relaunch", "Loyalty plus"]
    # The room page: login (session, user), the member, the session, its steps, the vote's
    # totals and candidates, the decisions, the members to name as owners. The running session
    # of the "Back to the room" banner is the one the view read.
    url = reverse("planning:session", args=[plan.slug, workshop.pk])
    with django_assert_num_queries(9):
        page = cmo.client.get(url).content.decode()
    assert "“Q1 workshop” is running." in page
    assert page.index("App relaunch") < page.index("Loyalty plus")


def test_a_revealed_vote_reads_its_candidates_once(
    plan, workshop, facilitator, cmo, choices, django_assert_num_queries
):
    goto(facilitator, workshop, StepKind.VOTE)
    act(cmo, workshop, "vote", item=choices[1].pk)
    act(facilitator, workshop, "reveal")
    url = reverse("planning:session", args=[plan.slug, workshop.pk])
    # Login, member, session, steps, my dots, the candidates, the voters, the totals.
    with django_assert_num_queries(9):
        page = cmo.client.get(url).content.decode()
    results = page[page.index('aria-label="Results"') :]
    assert "Rentals" in results and "Loyalty plus" not in results


def test_a_planned_session_s_room_names_the_one_running(plan, workshop, facilitator, cmo):
    other = create_session(
        plan, facilitator.user, title="Later", date=dt.date(2027, 2, 1), template="review"
    )
    page = room_page(cmo, other)
    assert "“Q1 workshop” is running." in page
    assert (
        f'href="{reverse("planning:session", args=[plan.slug, workshop.pk])}" data-room-link'
        in page
    )


def test_a_vote_takes_the_member_the_view_read(
    workshop, facilitator, cmo, observer, choices, django_assert_num_queries
):
    goto(facilitator, workshop, StepKind.VOTE)
    session = WorkshopSession.objects.select_related("current_step").get(pk=workshop.pk)
    step = session.current_step
    step.session = session
    # Savepoint, the step locked, the session under the lock, the item in the vote, the
    # member's dots, their dot on the item, the new dot, the room's revision (a first dot),
    # release: the member is not read again.
    with django_assert_num_queries(9):
        left = voting.vote(step, cmo.membership, choices[0].pk, 1)
    assert left == session.votes_per_member - 1
    assert SessionVote.objects.get().voter == cmo.user
    with pytest.raises(SessionError, match="Observers watch the vote"):
        voting.vote(step, observer.membership, choices[0].pk, 1)
    assert SessionVote.objects.count() == 1


def test_a_decide_step_walks_its_items_one_by_one(workshop, facilitator, cmo, choices):
    goto(facilitator, workshop, StepKind.VOTE)
    act(cmo, workshop, "vote", item=choices[2].pk)
    act(cmo, workshop, "vote", item=choices[2].pk)
    act(cmo, workshop, "vote", item=choices[0].pk)
    act(facilitator, workshop, "reveal")
    goto(facilitator, workshop, StepKind.DECIDE)

    def focused(page: str) -> str:
        start = page.index("decide-focus")
        return page[start : page.index("</li>", start)]

    assert "App relaunch" in focused(room_page(cmo, workshop))  # most votes: first
    act(facilitator, workshop, "adopt", choice=choices[2].pk)
    assert "Loyalty plus" in focused(room_page(cmo, workshop))  # the next one not decided
    assert act(facilitator, workshop, "discuss", item=f"choice-{choices[2].pk}").status_code == 200
    assert "App relaunch" in focused(room_page(cmo, workshop))
    assert act(cmo, workshop, "discuss", item=f"choice-{choices[0].pk}").status_code == 403
    off_list = act(facilitator, workshop, "discuss", item=f"choice-{choices[1].pk}")
    assert off_list.status_code == 409  # Rentals got no vote: not on this step's list


def test_the_room_hears_who_voted_not_each_dot(workshop, facilitator, cmo, choices):
    goto(facilitator, workshop, StepKind.VOTE)
    before = workshop.revision
    revisions = []
    for action, item in [("vote", 0), ("vote", 1), ("unvote", 1), ("unvote", 0)]:
        act(cmo, workshop, action, item=choices[item].pk)
        workshop.refresh_from_db()
        revisions.append(workshop.revision)
    # First dot: the count of voters moves; a second dot and its removal: nothing to follow;
    # the last dot taken back: the count moves again.
    assert revisions[0] > before
    assert revisions[1] == revisions[0] and revisions[2] == revisions[1]
    assert revisions[3] > revisions[2]
    assert "1 member voted so far" not in room_page(facilitator, workshop)


def test_nothing_is_decided_once_the_session_has_ended(workshop, facilitator, choices):
    tested = Assumption.objects.create(
        choice=choices[0],
        statement="Members renew",
        metric="active_customers",
        params={"event_type": "purchase"},
        comparator=">=",
        threshold=10,
    )
    assert act(facilitator, workshop, "end").status_code == 200
    for action, data in (
        ("tested", {"assumption": tested.pk}),
        ("adopt", {"choice": choices[0].pk}),
    ):
        refused = act(facilitator, workshop, action, **data)
        assert refused.status_code == 409 and "This session has ended" in refused.content.decode()
    assert not Decision.objects.filter(session=workshop).exists()
