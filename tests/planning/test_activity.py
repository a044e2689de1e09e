"""The activity feed: every change in a sentence, who and when, before → after in words, by item
and by person."""

from __future__ import annotations

import re
from html import unescape

import pytest
from django.urls import reverse
from django.utils.html import strip_tags

from planning.models import Activity, Assumption, BTInitiative, Comment, StrategicChoice
from planning.services import change_member, create_item, save_item, snapshot

pytestmark = pytest.mark.django_db


def feed(client, plan, **filters) -> list[str]:
    """The feed's lines as a person reads them (screen-reader words included), newest first."""
    html = client.get(reverse("planning:activity", args=[plan.slug]), filters).content.decode()
    entries = html.split('<li class="feed-entry">')[1:]
    return [words(re.sub(r"<time[^>]*>.*?</time>", "", entry)) for entry in entries]


def words(html: str) -> str:
    text = unescape(strip_tags(html.replace("<", " <")))
    return re.sub(r" ([.,:])", r"\1", " ".join(text.split()))


def edit(item, actor, **changes):
    item = type(item).objects.get(pk=item.pk)
    base = snapshot(item)
    return save_item(item, actor, base_version=item.version, base=base, mine={**base, **changes})


def test_each_change_is_a_sentence_with_before_and_after_in_words(plan, cmo, cio):
    buy, use = plan.stages.get(name="Buy"), plan.stages.get(name="Use")
    choice = create_item("choice", plan, cmo.user, {"title": "Loyalty", "stages": [buy.pk]})
    create_item("choice", plan, cio.user, {"title": "Self-service portal"})
    edit(choice, cio.user, title="Loyalty subscription", stages=[buy.pk, use.pk])

    lines = feed(cmo.client, plan)
    assert lines[0].startswith(
        "Maya Tester edited the strategic choice “Loyalty subscription”. Revert"
    )
    assert "Title was Loyalty → now Loyalty subscription" in lines[0]
    assert "Stages was Buy → now Buy, Use" in lines[0]
    assert "Maya Tester added the strategic choice “Self-service portal”." in lines[1]
    assert "Ana Tester added the strategic choice “Loyalty”." in lines[2]


def test_the_feed_filters_by_item_and_by_person(plan, cmo, cio):
    choice = create_item("choice", plan, cmo.user, {"title": "Loyalty"})
    other = create_item("choice", plan, cio.user, {"title": "Self-service portal"})
    edit(choice, cio.user, title="Loyalty subscription")

    only_item = feed(cmo.client, plan, type="choice", item=choice.pk)
    assert len(only_item) == 2 and not any("Self-service portal" in line for line in only_item)
    by_cio = feed(cmo.client, plan, person=cio.user.pk)
    assert [line.split(".")[0] for line in by_cio] == [
        "Maya Tester edited the strategic choice “Loyalty subscription”",
        "Maya Tester added the strategic choice “Self-service portal”",
    ]
    html = cmo.client.get(
        reverse("planning:activity", args=[plan.slug]), {"person": cio.user.pk}
    ).content.decode()
    assert f"?type=choice&amp;item={other.pk}" in html
    assert [line.split(".")[0] for line in feed(cmo.client, plan, person=cmo.user.pk)] == [
        "Ana Tester added the strategic choice “Loyalty”"
    ]


def test_statuses_roles_and_numbers_read_in_words(plan, cmo, facilitator, bu_leader):
    choice = create_item("choice", plan, cmo.user, {"title": "Loyalty"})
    assumption = create_item(
        "assumption",
        plan,
        cmo.user,
        {
            "statement": "Buyers come back",
            "metric": "repeat_rate",
            "params": {"event_type": "purchase", "within_days": 90},
            "comparator": ">=",
            "threshold": 0.3,
        },
        choice_id=choice.pk,
    )
    initiative = create_item("initiative", plan, cmo.user, {"title": "Member app"})
    edit(choice, cmo.user, status="adopted", horizon="later", owner=bu_leader.membership.pk)
    edit(assumption, cmo.user, threshold=0.5914448669201521, importance=5)
    edit(initiative, cmo.user, cost_estimate="250000.00")
    change_member(bu_leader.membership, facilitator.user, "observer", "")

    lines = feed(cmo.client, plan)
    member, initiative_line, assumption_line, choice_line = lines[:4]
    assert member.startswith("Fran Tester edited the member Raj Tester (Observer).")
    assert "Role was BU leader → now Observer" in member
    assert "Business unit was Retail → now —" in member
    assert "Cost estimate was — → now 250,000" in initiative_line
    assert "Threshold was 30.0% → now 59.1%" in assumption_line
    assert "Importance was 3 → now 5" in assumption_line
    assert "Status was Proposed → now Adopted" in choice_line
    assert "Horizon was Now → now Later" in choice_line
    assert "Owner was — → now Raj Tester" in choice_line
    html = cmo.client.get(reverse("planning:activity", args=[plan.slug])).content.decode()
    assert "0.5914" not in html and "adopted<" not in html and "bu_leader" not in html


def test_a_single_retest_shows_its_status_and_observed_value_in_words(plan, cmo):
    choice = StrategicChoice.objects.create(plan=plan, title="Loyalty")
    assumption = Assumption.objects.create(
        choice=choice,
        statement="Buyers come back",
        metric="repeat_rate",
        params={"event_type": "purchase"},
        comparator=">=",
        threshold=0.3,
    )
    Activity.objects.create(
        plan=plan,
        action="tested",
        item_type="assumption",
        item_id=assumption.pk,
        item_label=assumption.statement,
        before={"status": "untested"},
        after={"status": "at_risk", "observed": 0.2741935483870968},
    )
    (line,) = feed(cmo.client, plan)
    assert line.startswith("Outside-In re-tested the assumption “Buyers come back”.")
    assert "Status was Untested → now At risk" in line
    assert "Observed was — → now 27.4%" in line
    assert "Revert" not in line


def test_comments_members_and_invitations_read_as_sentences(plan, cmo, facilitator):
    from planning.services import add_comment, remove_member
    from planning.services.invitations import invite

    choice = create_item("choice", plan, cmo.user, {"title": "Loyalty"})
    add_comment(plan, cmo.user, choice, "@fran do we know the churn of members?")
    remove_member(cmo.membership, facilitator.user)
    invite(plan, facilitator.user, "zoe@example.com", "bu_leader", "Retail")

    lines = feed(facilitator.client, plan)
    assert lines.pop(0) == "Fran Tester invited zoe@example.com as BU leader."
    assert lines[0] == "Fran Tester removed Ana Tester (CMO) from the plan."
    assert lines[1] == "Ana Tester commented on “Loyalty”. @fran do we know the churn of members?"
    # The comment links to itself in its thread, its mention of a member marked.
    comment = Comment.objects.get()
    thread = reverse("planning:choice_comments", args=[plan.slug, choice.pk])
    html = facilitator.client.get(reverse("planning:activity", args=[plan.slug])).content.decode()
    assert f'<a href="{thread}#comment-{comment.pk}">on “Loyalty”</a>' in html
    assert '<strong class="mention">@fran</strong> do we know' in html


def test_observers_see_the_feed_without_revert_buttons(plan, cmo, observer):
    create_item("choice", plan, cmo.user, {"title": "Loyalty"})
    (line,) = feed(observer.client, plan)
    assert "Ana Tester added the strategic choice “Loyalty”." in line
    assert "Revert" not in line
    html = cmo.client.get(reverse("planning:activity", args=[plan.slug])).content.decode()
    assert re.search(r'aria-label="Revert: added the strategic choice “Loyalty”">Revert<', html)


def test_the_feed_reads_the_same_number_of_queries_however_long(
    plan, cmo, django_assert_num_queries
):
    for i in range(30):
        BTInitiative.objects.create(plan=plan, title=f"Initiative {i}")
        create_item("choice", plan, cmo.user, {"title": f"Choice {i}"})
    with django_assert_num_queries(9):
        assert len(feed(cmo.client, plan)) == 30
