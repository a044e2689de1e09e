"""Comments on choices and assumptions, with @mentions e-mailed over real SMTP."""

from __future__ import annotations

import json
import re
from html import unescape

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from planning.models import (
    Activity,
    Assumption,
    Comment,
    Membership,
    Role,
    StrategicChoice,
    display_name,
)
from planning.tasks import send_mention

pytestmark = pytest.mark.django_db


@pytest.fixture
def choice(plan):
    return StrategicChoice.objects.create(plan=plan, title="Launch a loyalty subscription")


def url(plan, choice):
    return reverse("planning:choice_comments", args=[plan.slug, choice.pk])


def test_a_comment_mentioning_a_member_emails_them(
    plan, cmo, cio, choice, smtp_server, tasks_inline, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = cmo.client.post(
            url(plan, choice),
            {"body": "@maya can the billing platform carry this?"},
            headers={"HX-Request": "true"},
        )
    html = response.content.decode()
    assert response.status_code == 200
    assert "<html" not in html
    assert "can the billing platform carry this?" in html
    comment = Comment.objects.get()
    assert (comment.choice, comment.author) == (choice, cmo.user)
    assert Activity.objects.filter(plan=plan, item_type="comment", action="created").exists()
    assert len(smtp_server.messages) == 1
    message = smtp_server.messages[0]
    assert message.envelope_rcpt_tos == ["maya@example.com"]
    assert message["Subject"] == "Ana Tester mentioned you in “FY2027 growth plan”"
    assert "can the billing platform carry this?" in message.get_content()


def test_a_mention_email_links_to_the_comment_itself(
    plan, cmo, cio, choice, smtp_server, tasks_inline, django_capture_on_commit_callbacks
):
    assumption = Assumption.objects.create(choice=choice, statement="30% buy again")
    target = reverse("planning:assumption_comments", args=[plan.slug, assumption.pk])
    cmo.client.post(target, {"body": "An earlier word"})
    with django_capture_on_commit_callbacks(execute=True):
        response = cmo.client.post(target, {"body": "@maya is the 2025 cohort enough?"})
    comment = Comment.objects.get(body__startswith="@maya")
    assert response["Location"] == f"{target}#comment-{comment.pk}"  # back to it, too
    (message,) = smtp_server.messages
    link = re.search(r"Read it and answer: http://127\.0\.0\.1:8000(\S+)", message.get_content())
    assert link.group(1) == f"{target}#comment-{comment.pk}"
    page = cio.client.get(link.group(1).split("#")[0]).content.decode()
    assert f'<li id="comment-{comment.pk}" class="comment">' in page
    assert "is the 2025 cohort enough?" in page


def test_a_mention_whose_author_has_left_still_links_to_the_comment(
    plan, cmo, cio, choice, smtp_server
):
    comment = Comment.objects.create(
        plan=plan, choice=choice, author=None, body="@maya over to you"
    )
    assert send_mention(comment.pk, cio.membership.pk) is True
    (message,) = smtp_server.messages
    assert message["Subject"] == "Someone mentioned you in “FY2027 growth plan”"
    thread = reverse("planning:choice_comments", args=[plan.slug, choice.pk])
    assert f"Read it and answer: http://127.0.0.1:8000{thread}#comment-{comment.pk}" in (
        message.get_content()
    )


def test_a_member_without_a_full_name_is_named_by_username(plan, cmo, choice):
    kim = get_user_model().objects.create_user(username="kim", email="kim@example.com")
    Membership.objects.create(plan=plan, user=kim, role=Role.CIO)
    client = Client()
    client.force_login(kim)
    client.post(url(plan, choice), {"body": "Numbers first."})
    page = client.get(url(plan, choice)).content.decode()
    assert '<span class="account-name">kim</span>' in page
    assert "<strong>kim</strong> · <time" in page  # the comment's author
    assert (
        '<span class="account-name">Ana Tester</span>'
        in cmo.client.get(url(plan, choice)).content.decode()
    )
    feed = cmo.client.get(reverse("planning:activity", args=[plan.slug])).content.decode()
    assert "<strong>kim</strong> commented" in feed
    assert (display_name(kim), display_name(cmo.user)) == ("kim", "Ana Tester")


def test_mentions_of_members_are_highlighted_and_nothing_else_is(plan, cmo, cio, choice):
    body = "@maya and @Ana., see <b>this</b> & mail me at ana@example.com; @nobody\nthanks"
    cmo.client.post(url(plan, choice), {"body": body})
    html = cmo.client.get(url(plan, choice)).content.decode()
    assert (
        '<p class="comment-body"><strong class="mention">@maya</strong> and '
        '<strong class="mention">@Ana</strong>., see &lt;b&gt;this&lt;/b&gt; &amp; mail me at '
        "ana@example.com; @nobody<br>thanks</p>"
    ) in html


def test_the_comment_box_suggests_the_other_members_of_the_plan(plan, cmo, cio, observer, choice):
    html = cmo.client.get(url(plan, choice), headers={"HX-Request": "true"}).content.decode()
    box = re.search(r"<textarea [^>]*>", html).group(0)
    options = json.loads(unescape(re.search(r'data-mentions="([^"]*)"', box).group(1)))
    assert options == [
        {"username": "maya", "name": "Maya Tester", "role": "CIO"},
        {"username": "olga", "name": "Olga Tester", "role": "Observer"},
    ]
    listbox = re.search(r'aria-controls="([^"]+)"', box).group(1)
    assert f'<ul class="mention-list" id="{listbox}" role="listbox"' in html
    assert 'aria-autocomplete="list"' in box


def test_no_email_for_unknown_names_or_oneself(
    plan, cmo, choice, smtp_server, tasks_inline, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        cmo.client.post(url(plan, choice), {"body": "@ana note to self, and @nobody"})
    assert Comment.objects.count() == 1
    assert smtp_server.messages == []


def test_comments_on_an_assumption_plain_post_redirects(plan, cmo, choice):
    assumption = Assumption.objects.create(choice=choice, statement="30% buy again")
    target = reverse("planning:assumption_comments", args=[plan.slug, assumption.pk])
    response = cmo.client.post(target, {"body": "Source: the 2025 cohort study."})
    assert response.status_code == 302
    assert Comment.objects.get().assumption == assumption
    assert "Source: the 2025 cohort study." in cmo.client.get(target).content.decode()


def test_empty_comment_is_explained(plan, cmo, choice):
    response = cmo.client.post(url(plan, choice), {"body": "  "})
    assert response.status_code == 422
    assert "Write something first." in response.content.decode()
    assert Comment.objects.count() == 0


def test_observers_read_but_cannot_comment_and_outsiders_see_nothing(
    plan, cmo, observer, outsider, choice
):
    cmo.client.post(url(plan, choice), {"body": "First"})
    page = observer.client.get(url(plan, choice)).content.decode()
    assert "First" in page and "Your comment" not in page
    assert observer.client.post(url(plan, choice), {"body": "Sneaky"}).status_code == 403
    assert outsider.client.get(url(plan, choice)).status_code == 404
    assert outsider.client.post(url(plan, choice), {"body": "x"}).status_code == 404
    assert Comment.objects.count() == 1


def test_comment_counts_show_on_the_board(plan, cmo, choice):
    choice.stages.set([plan.stages.get(name="Buy")])
    cmo.client.post(url(plan, choice), {"body": "One"})
    cmo.client.post(url(plan, choice), {"body": "Two"})
    html = cmo.client.get(reverse("planning:board", args=[plan.slug])).content.decode()
    assert ">2 comments<" in html
