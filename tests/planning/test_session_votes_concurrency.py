"""Thirty members dot-vote at the same moment, each trying more dots than allowed (8 of their 5,
and 4 on one item where at most 3 go): no vote the service accepted is lost, and nobody ends
above either cap. PostgreSQL, real threads, each with its own connection; a member's dots are
spread over several threads, as two tabs or a double click would send them."""

from __future__ import annotations

import datetime as dt
import queue
import random
import threading
import time
from collections import Counter

import pytest
from django.contrib.auth import get_user_model
from django.db import connection, connections

from planning.models import Membership, Role, SessionVote, StepKind, StrategicChoice
from planning.sessions import room
from planning.sessions.agenda import create_session
from planning.sessions.errors import SessionError
from planning.sessions.voting import vote

from ..conftest import REQUIRE_SERVICES

MEMBERS = 30
TRIES = 8  # per member: more than votes_per_member
THREADS = 30  # one connection each


def _needs_postgresql() -> None:
    if connection.vendor != "postgresql":
        message = "thirty members voting at once need PostgreSQL (set DATABASE_URL)"
        if REQUIRE_SERVICES:
            pytest.fail(message + " and REQUIRE_SERVICES=1")
        pytest.skip(message)


def members(plan) -> list:
    users = get_user_model().objects.bulk_create(
        get_user_model()(username=f"voter{i:02d}", email=f"voter{i:02d}@example.com")
        for i in range(MEMBERS)
    )
    Membership.objects.bulk_create(Membership(plan=plan, user=u, role=Role.CIO) for u in users)
    return users


def ballots(users, items, rng: random.Random) -> list[tuple]:
    """Each member's tries: 4 on one item (one above the per-item cap) and 4 on the others,
    8 in all (3 above their votes); every member can place all of their votes."""
    tries = []
    for i, user in enumerate(users):
        favourite = items[i % len(items)]
        others = [item for item in items if item != favourite]
        picks = [favourite] * 4 + [rng.choice(others) for _ in range(TRIES - 4)]
        tries += [(user, item.pk) for item in picks]
    rng.shuffle(tries)  # one member's tries run in several threads at once
    return tries


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_thirty_members_voting_at_once_lose_no_vote_and_pass_no_cap(plan, facilitator):
    _needs_postgresql()
    items = [
        StrategicChoice.objects.create(plan=plan, title=title, position=i)
        for i, title in enumerate(["Loyalty plus", "Rentals", "App relaunch", "Same-day pickup"])
    ]
    session = create_session(
        plan, facilitator.user, title="Vote", date=dt.date(2027, 1, 12), template="workshop"
    )
    room.start_session(session)
    step = session.steps.get(kind=StepKind.VOTE)
    room.go_to_step(session, step)
    session.refresh_from_db()
    per_member, per_item = session.votes_per_member, session.votes_per_item
    assert TRIES > per_member and 4 > per_item
    users = members(plan)
    membership_of = {m.user_id: m for m in Membership.objects.filter(plan=plan)}
    work: queue.Queue = queue.Queue()
    for attempt in ballots(users, items, random.Random(2027)):
        work.put(attempt)

    accepted: Counter = Counter()
    refused: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    # A thread that cannot start breaks the barrier for all: the test fails with the cause.
    start = threading.Barrier(THREADS, timeout=60)

    def voter() -> None:
        try:
            start.wait()
            while True:
                try:
                    user, item_id = work.get_nowait()
                except queue.Empty:
                    return
                try:
                    vote(step, membership_of[user.pk], item_id, 1)
                except SessionError as error:
                    with lock:
                        refused.append(str(error))
                else:
                    with lock:
                        accepted[(user.pk, item_id)] += 1
        except BaseException as error:
            start.abort()
            with lock:
                errors.append(error)
        finally:
            connections.close_all()

    began = time.monotonic()
    threads = [threading.Thread(target=voter) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    took = time.monotonic() - began

    assert errors == []
    assert not any(thread.is_alive() for thread in threads)
    assert len(refused) + accepted.total() == MEMBERS * TRIES  # every try answered
    stored = Counter(
        {(row.voter_id, row.item_id): row.count for row in SessionVote.objects.filter(step=step)}
    )
    # No vote lost: what the service accepted is exactly what is stored, dot for dot.
    assert stored == accepted
    totals = Counter()
    for (voter_id, _item), count in stored.items():
        totals[voter_id] += count
    assert max(stored.values()) == per_item  # the cap was reached, never passed
    # Each member could place all their votes, so each did, and no more.
    assert totals == {user.pk: per_member for user in users}
    assert len(refused) == MEMBERS * (TRIES - per_member)
    assert set(refused) <= {
        f"You have used all {per_member} of your votes.",
        f"At most {per_item} votes on one item.",
    }
    assert took < 20, f"{MEMBERS * TRIES} votes took {took:.1f}s"
