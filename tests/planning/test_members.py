"""Facilitators manage members: invite people (tests/planning/test_invitations.py has the
whole flow), change roles, remove, and always leave someone to facilitate."""

from __future__ import annotations

import re
import threading

import pytest
from django.db import connection, connections
from django.urls import reverse

from planning.models import Activity, Assumption, Membership, StrategicChoice
from planning.services import MemberError, change_member, remove_member
from tests.conftest import REQUIRE_SERVICES

pytestmark = pytest.mark.django_db


def members_url(plan):
    return reverse("planning:members", args=[plan.slug])


def test_facilitator_brings_a_person_in_by_invitation(
    plan, facilitator, outsider, smtp_server, tasks_inline, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = facilitator.client.post(
            members_url(plan), {"email": "otto@example.com", "role": "cio"}
        )
    assert response.status_code == 302
    link = re.search(
        r"http://127\.0\.0\.1:8000(/invitations/\S+/)", smtp_server.messages[0].get_content()
    )
    outsider.client.post(link.group(1), {"answer": "accept"})
    assert Membership.objects.get(plan=plan, user=outsider.user).role == "cio"
    assert Activity.objects.filter(plan=plan, item_type="member", action="created").exists()
    assert outsider.client.get(reverse("planning:board", args=[plan.slug])).status_code == 200


def test_bad_invitations_are_explained_and_nothing_is_added(plan, facilitator, cmo):
    cases = [
        ({"email": "ghost", "role": "cio"}, "Enter a valid email address."),
        ({"email": "ana@example.com", "role": "cio"}, "is a member of this plan already"),
        ({"email": "zoe@example.com", "role": "bu_leader"}, "A BU leader names the business unit"),
    ]
    for data, message in cases:
        response = facilitator.client.post(members_url(plan), data)
        assert response.status_code == 400
        assert message in response.content.decode()
    assert plan.memberships.count() == 2
    assert not plan.invitations.exists()


def test_change_role_and_remove(plan, facilitator, cmo):
    url = reverse("planning:member_change", args=[plan.slug, cmo.membership.pk])
    facilitator.client.post(url, {"role": "bu_leader", "business_unit": "Stores"})
    cmo.membership.refresh_from_db()
    assert (cmo.membership.role, cmo.membership.business_unit) == ("bu_leader", "Stores")
    facilitator.client.post(
        url, {"role": "bu_leader", "business_unit": "Stores", "remove": "1", "confirm": "1"}
    )
    assert not Membership.objects.filter(pk=cmo.membership.pk).exists()
    assert cmo.client.get(reverse("planning:board", args=[plan.slug])).status_code == 404


def test_removing_a_member_asks_first_and_says_what_they_own(plan, facilitator, cmo, cio):
    choice = StrategicChoice.objects.create(plan=plan, title="Loyalty", owner=cmo.membership)
    for statement in ("Members buy again", "Members pay"):
        Assumption.objects.create(choice=choice, statement=statement, owner=cmo.membership)
    page = facilitator.client.get(members_url(plan)).content.decode()
    ask = f'href="?remove={cmo.membership.pk}#confirm-remove" aria-label="Remove Ana Tester"'
    assert ask in page and "Remove Ana Tester from the plan?" not in page

    # Remove, without saying yes: nothing happens but the question.
    url = reverse("planning:member_change", args=[plan.slug, cmo.membership.pk])
    response = facilitator.client.post(url, {"role": "cmo", "remove": "1"})
    assert response.status_code == 302
    assert response["Location"] == f"{members_url(plan)}?remove={cmo.membership.pk}#confirm-remove"
    assert Membership.objects.filter(pk=cmo.membership.pk).exists()
    assert not Activity.objects.filter(item_type="member", action="deleted").exists()

    question = facilitator.client.get(members_url(plan), {"remove": cmo.membership.pk})
    html = question.content.decode()
    assert "Remove Ana Tester from the plan?" in html
    assert "They own 1 strategic choice and 2 assumptions:" in html
    assert f'<a class="button" href="{members_url(plan)}">Keep Ana Tester</a>' in html
    assert '<input type="hidden" name="confirm" value="1">' in html

    # Only a facilitator is asked; a member who is not is asked nothing.
    assert (
        "from the plan?"
        not in cio.client.get(members_url(plan), {"remove": cmo.membership.pk}).content.decode()
    )

    response = facilitator.client.post(url, {"remove": "1", "confirm": "1"}, follow=True)
    assert "Removed Ana Tester from the plan." in response.content.decode()
    assert not Membership.objects.filter(pk=cmo.membership.pk).exists()
    assert Assumption.objects.filter(owner=None).count() == 2


def test_the_last_facilitator_stays(plan, facilitator):
    url = reverse("planning:member_change", args=[plan.slug, facilitator.membership.pk])
    page = facilitator.client.post(url, {"role": "cmo"}, follow=True).content.decode()
    assert "A plan needs at least one facilitator" in page
    facilitator.membership.refresh_from_db()
    assert facilitator.membership.role == "facilitator"


def test_only_facilitators_manage_members(plan, cmo, observer, outsider, facilitator):
    url = reverse("planning:member_change", args=[plan.slug, facilitator.membership.pk])
    invitation = {"email": "olga@example.com", "role": "cio"}
    assert cmo.client.post(members_url(plan), invitation).status_code == 403
    assert cmo.client.post(url, {"role": "observer"}).status_code == 403
    assert observer.client.post(url, {"remove": "1"}).status_code == 403
    assert outsider.client.post(url, {"remove": "1"}).status_code == 404
    assert Membership.objects.get(pk=facilitator.membership.pk).role == "facilitator"
    assert cmo.client.get(url).status_code == 405


def _needs_postgresql() -> None:
    if connection.vendor != "postgresql":
        message = "the race between two facilitators needs PostgreSQL's row locks (DATABASE_URL)"
        if REQUIRE_SERVICES:
            pytest.fail(message + " and REQUIRE_SERVICES=1")
        pytest.skip(message)


def _race(first, second, act) -> list:
    """Each of two facilitators acts on the other at the same moment, both past the views'
    permission checks: `act(target, actor)` is remove_member or a demotion."""
    results: list = [None, None]
    start = threading.Barrier(2, timeout=30)

    def run(i: int, actor, target) -> None:
        try:
            mine = Membership.objects.select_related("user", "plan").get(pk=target.membership.pk)
            start.wait()
            act(mine, actor.user)
            results[i] = "done"
        except MemberError as error:
            results[i] = str(error)
        except Exception as error:
            start.abort()
            results[i] = error
        finally:
            connections.close_all()

    threads = [
        threading.Thread(target=run, args=(0, first, second)),
        threading.Thread(target=run, args=(1, second, first)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def _demote(membership, actor) -> None:
    change_member(membership, actor, "cmo", "")


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "act", [remove_member, _demote], ids=["remove-each-other", "demote-each-other"]
)
def test_two_facilitators_acting_on_each_other_at_once_leave_one(plan, facilitator, cmo, act):
    _needs_postgresql()
    for _ in range(10):
        for persona in (facilitator, cmo):
            persona.membership, _ = Membership.objects.update_or_create(
                plan=plan, user=persona.user, defaults={"role": "facilitator"}
            )
        results = _race(facilitator, cmo, act)
        assert sorted(results, key=str) == [
            "A plan needs at least one facilitator; make someone else facilitator first.",
            "done",
        ]
        assert plan.memberships.filter(role="facilitator").count() == 1
