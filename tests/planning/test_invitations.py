"""Invitations (issue 9): inviting reveals nothing about the address, joining is the invited
person's own act, and only members who accepted get @mention e-mails."""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import IntegrityError, transaction
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from planning.models import Activity, Comment, Invitation, Membership, StrategicChoice

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)
LINK = re.compile(r"http://127\.0\.0\.1:8000(/invitations/\S+/)")
HTMX = {"HX-Request": "true"}


def members_url(plan) -> str:
    return reverse("planning:members", args=[plan.slug])


def change_url(plan, invitation) -> str:
    return reverse("planning:invitation_change", args=[plan.slug, invitation.pk])


def invite(persona, plan, email: str, role: str = "cio", business_unit: str = "", **extra):
    data = {"email": email, "role": role, "business_unit": business_unit}
    return persona.client.post(members_url(plan), data, **extra)


def link_in(message) -> str:
    return LINK.search(message.get_content()).group(1)


@pytest.fixture
def frozen():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture
def mail(smtp_server, tasks_inline, django_capture_on_commit_callbacks):
    """The real SMTP server, with tasks run as their transaction commits."""

    def capture():
        return django_capture_on_commit_callbacks(execute=True)

    smtp_server.capture = capture
    return smtp_server


def sent_link(facilitator, plan, mail, email: str, role: str = "cio", **data) -> str:
    with mail.capture():
        invite(facilitator, plan, email, role, **data)
    return link_in(mail.messages[-1])


def same_page(html: str, address: str) -> str:
    """A page with what may differ between two invitations taken out: the address itself, the
    per-request CSRF token and CSP nonce, and the invitation's id in its Resend/Revoke address."""
    html = html.replace(address, "ADDRESS")
    html = re.sub(r'nonce="[^"]+"', "NONCE", html)
    html = re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', "CSRF", html)
    html = re.sub(r'"X-CSRFToken": "[^"]+"', "CSRF", html)
    return re.sub(r"/invitations/\d+/", "/invitations/N/", html)


# --- inviting reveals nothing -----------------------------------------------------------------


def test_known_and_unknown_addresses_get_the_same_answer_and_no_account(
    plan, facilitator, outsider, staff, frozen
):
    addresses = ["otto@example.com", "sam@example.com", "nobody@northwind.example"]
    users = get_user_model().objects.count()
    plain, fragments = [], []
    for address in addresses:
        response = invite(facilitator, plan, address)
        assert (response.status_code, response["Location"]) == (302, members_url(plan))
        page = facilitator.client.get(members_url(plan)).content.decode()
        assert f"Invitation sent to {address}." in page
        Invitation.objects.update(revoked_at=timezone.now())  # the next one is alone in the list
        fragment = invite(facilitator, plan, address, headers=HTMX)
        assert fragment.status_code == 200
        fragments.append(same_page(fragment.content.decode(), address))
        plain.append(same_page(page, address))
        Invitation.objects.update(revoked_at=timezone.now())
    assert plain[0] == plain[1] == plain[2]
    assert fragments[0] == fragments[1] == fragments[2]
    assert "<html" not in fragments[0] and "Invitation sent to ADDRESS." in fragments[0]
    assert "Otto" not in plain[0] and "Otto" not in fragments[0]
    assert get_user_model().objects.count() == users
    assert plan.memberships.filter(user__in=[outsider.user, staff.user]).count() == 0


def test_the_invitation_email_arrives_and_the_invited_account_joins(
    plan, facilitator, outsider, mail
):
    link = sent_link(facilitator, plan, mail, "Otto@Example.com", "bu_leader", business_unit="Web")
    message = mail.messages[0]
    assert message.envelope_rcpt_tos == ["Otto@example.com"]
    assert message["Subject"] == "Fran Tester invited you to “FY2027 growth plan” on Outside-In"
    assert "as BU leader for Web" in message.get_content()
    assert not Membership.objects.filter(user=outsider.user).exists()

    page = outsider.client.get(link).content.decode()
    assert "Join FY2027 growth plan as BU leader for Web" in page
    assert "Accept invitation" in page and "Decline" in page
    response = outsider.client.post(link, {"answer": "accept"})
    assert response["Location"] == reverse("planning:board", args=[plan.slug])
    member = Membership.objects.get(plan=plan, user=outsider.user)
    assert (member.role, member.business_unit) == ("bu_leader", "Web")
    joined = Activity.objects.get(plan=plan, item_type="member", action="created")
    assert (joined.actor, joined.item_id) == (outsider.user, member.pk)
    assert joined.after["invited_by"] == "Fran Tester"
    invitation = Invitation.objects.get()
    assert (invitation.accepted_by, invitation.state(timezone.now())) == (outsider.user, "accepted")
    board = outsider.client.get(reverse("planning:board", args=[plan.slug]))
    welcome = "Welcome to FY2027 growth plan: you are a member as BU leader for Web."
    assert board.status_code == 200 and welcome in board.content.decode()

    again = outsider.client.get(link)
    assert again.status_code == 410
    assert "This invitation has been used already." in again.content.decode()


def test_signing_in_comes_first_and_brings_the_person_back(plan, facilitator, outsider, mail):
    link = sent_link(facilitator, plan, mail, "otto@example.com")
    stranger = Client()
    page = stranger.get(link).content.decode()
    assert "Sign in to accept" in page
    assert f"/accounts/login/?next={link.replace(':', '%3A')}" in page
    response = stranger.post(link, {"answer": "accept"})
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=/invitations/")
    assert not Membership.objects.filter(user=outsider.user).exists()


def test_a_newcomer_sets_up_an_account_from_the_invitation(plan, facilitator, mail):
    users = get_user_model().objects.count()
    link = sent_link(facilitator, plan, mail, "lena@northwind.example", "cmo")
    assert get_user_model().objects.count() == users  # no account until she makes one
    newcomer = Client()
    assert "Set up your account" in newcomer.get(link).content.decode()
    form = newcomer.get(link + "account/")
    assert "lena@northwind.example" in form.content.decode()
    password = "a-new-member-passphrase-7"
    response = newcomer.post(
        link + "account/",
        {
            "username": "lena",
            "first_name": "Lena",
            "last_name": "Berg",
            "password1": password,
            "password2": password,
        },
    )
    assert response["Location"] == reverse("planning:board", args=[plan.slug])
    lena = get_user_model().objects.get(username="lena")
    assert (lena.email, lena.get_full_name()) == ("lena@northwind.example", "Lena Berg")
    assert lena.check_password(password)
    assert Membership.objects.get(plan=plan, user=lena).role == "cmo"
    assert newcomer.get(reverse("planning:board", args=[plan.slug])).status_code == 200
    assert newcomer.get(link + "account/").status_code == 410


def test_an_address_with_an_account_signs_in_instead_of_making_a_second(
    plan, facilitator, outsider, mail
):
    link = sent_link(facilitator, plan, mail, "otto@example.com")
    stranger = Client()
    page = stranger.get(link + "account/").content.decode()
    assert "There is an account for otto@example.com already" in page
    password = "another-passphrase-99"
    stranger.post(
        link + "account/",
        {"username": "otto2", "first_name": "O", "password1": password, "password2": password},
    )
    assert not get_user_model().objects.filter(username="otto2").exists()
    assert not Membership.objects.filter(plan=plan).exclude(user=facilitator.user).exists()


def test_account_setup_explains_bad_input(plan, facilitator, cmo, mail):
    link = sent_link(facilitator, plan, mail, "lena@northwind.example")
    response = Client().post(
        link + "account/",
        {"username": "ana", "first_name": "", "password1": "short", "password2": "other"},
    )
    page = response.content.decode()
    assert response.status_code == 400
    assert "A user with that username already exists." in page
    assert "This field is required." in page
    assert "The two password fields didn" in page
    assert not get_user_model().objects.filter(email="lena@northwind.example").exists()


def test_another_account_cannot_accept(plan, facilitator, outsider, staff, mail):
    link = sent_link(facilitator, plan, mail, "otto@example.com")
    page = staff.client.get(link).content.decode()
    assert "This invitation was sent to otto@example.com" in page
    assert "Accept invitation" not in page
    response = staff.client.post(link, {"answer": "accept"})
    assert response.status_code == 403
    assert "Sign in with the account of otto@example.com" in response.content.decode()
    assert staff.client.post(link, {"answer": "decline"}).status_code == 403
    assert not Membership.objects.filter(user__in=[staff.user, outsider.user]).exists()
    assert Invitation.objects.get().state(timezone.now()) == "pending"


def test_declining_needs_no_account_and_ends_the_invitation(plan, facilitator, mail):
    link = sent_link(facilitator, plan, mail, "lena@northwind.example")
    stranger = Client()
    response = stranger.post(link, {"answer": "decline"})
    assert response.status_code == 200
    assert "You declined to join “FY2027 growth plan”" in response.content.decode()
    assert Invitation.objects.get().declined_at is not None
    assert Activity.objects.filter(item_type="invitation", action="declined").count() == 1
    gone = stranger.get(link)
    assert gone.status_code == 410 and "This invitation was declined." in gone.content.decode()
    assert plan.memberships.count() == 1
    assert stranger.post(link, {"answer": "maybe"}).status_code == 410


def test_links_that_lead_nowhere_say_why(plan, facilitator, outsider, mail):
    def answer(link: str) -> tuple[int, str]:
        response = outsider.client.get(link)
        return response.status_code, response.content.decode()

    status, page = answer("/invitations/not-a-link/")
    assert status == 404 and "This invitation link is not valid" in page
    link = sent_link(facilitator, plan, mail, "otto@example.com")
    forged = link.replace("/invitations/", "/invitations/x")
    assert answer(forged)[0] == 404
    assert answer(link + "account/")[0] == 302  # signed in already: to the invitation

    invitation = Invitation.objects.get()
    with mail.capture():
        facilitator.client.post(change_url(plan, invitation), {"action": "resend"})
    status, page = answer(link)
    assert status == 410 and "sent again since, with a new link" in page
    link = link_in(mail.messages[-1])
    assert answer(link)[0] == 200

    with time_machine.travel(timezone.now() + dt.timedelta(days=15)):
        status, page = answer(link)
        assert status == 410 and "This invitation expired on" in page
        assert "Ask Fran Tester to send it again." in page
        assert outsider.client.post(link, {"answer": "accept"}).status_code == 410

    facilitator.client.post(change_url(plan, invitation), {"action": "revoke"})
    status, page = answer(link)
    assert status == 410 and "withdrawn by the plan&#x27;s facilitators" in page
    assert outsider.client.post(link, {"answer": "accept"}).status_code == 410
    assert not Membership.objects.filter(user=outsider.user).exists()


# --- the members page -------------------------------------------------------------------------


def test_facilitators_resend_and_revoke_pending_invitations(plan, facilitator, cmo, mail):
    sent_link(facilitator, plan, mail, "lena@northwind.example", "bu_leader", business_unit="Web")
    invitation = Invitation.objects.get()
    page = facilitator.client.get(members_url(plan)).content.decode()
    assert "lena@northwind.example" in page and "BU leader for Web" in page
    assert "Resend" in page and "Revoke" in page
    seen_by_cmo = cmo.client.get(members_url(plan)).content.decode()
    assert "lena@northwind.example" in seen_by_cmo and "Revoke" not in seen_by_cmo

    token = invitation.token
    with mail.capture():
        fragment = facilitator.client.post(
            change_url(plan, invitation), {"action": "resend"}, headers=HTMX
        )
    html = fragment.content.decode()
    assert fragment.status_code == 200 and "<html" not in html
    assert "Invitation sent to lena@northwind.example again, with a new link." in html
    assert len(mail.messages) == 2
    invitation.refresh_from_db()
    assert invitation.token != token

    response = facilitator.client.post(change_url(plan, invitation), {"action": "revoke"})
    assert (response.status_code, response["Location"]) == (302, members_url(plan))
    page = facilitator.client.get(members_url(plan)).content.decode()
    assert "Withdrew the invitation of lena@northwind.example." in page
    assert "No open invitations." in page
    actions = Activity.objects.filter(item_type="invitation").order_by("id")
    assert [a.action for a in actions] == ["sent", "sent", "deleted"]
    assert (
        facilitator.client.post(change_url(plan, invitation), {"action": "resend"}).status_code
        == 404
    )


def test_inviting_an_address_again_updates_its_one_open_invitation(plan, facilitator, mail):
    sent_link(facilitator, plan, mail, "lena@northwind.example", "cio")
    sent_link(facilitator, plan, mail, "LENA@northwind.example", "observer")
    invitation = Invitation.objects.get()
    assert (invitation.role, len(mail.messages)) == ("observer", 2)
    with pytest.raises(IntegrityError), transaction.atomic():
        Invitation.objects.create(
            plan=plan,
            email="Lena@Northwind.example",
            role="cmo",
            token="t",
            sent_at=timezone.now(),
            expires_at=timezone.now(),
        )


def test_bad_invitations_are_explained_and_nothing_is_sent(plan, facilitator, cmo, mail, settings):
    settings.INVITATIONS_PER_DAY = 2
    cases = [
        ({"email": "zoe@example.com", "role": "bu_leader"}, "A BU leader names the business unit"),
        ({"email": "not an address", "role": "cio"}, "Enter a valid email address."),
        ({"email": "ana@example.com", "role": "cio"}, "ana@example.com is a member of this plan"),
    ]
    with mail.capture():
        for data, message in cases:
            response = facilitator.client.post(members_url(plan), data)
            assert response.status_code == 400
            assert message in response.content.decode()
            fragment = facilitator.client.post(members_url(plan), data, headers=HTMX)
            assert fragment.status_code == 422
            assert message in fragment.content.decode()
            assert "<html" not in fragment.content.decode()
    assert mail.messages == [] and not Invitation.objects.exists()

    for address in ["a@northwind.example", "b@northwind.example"]:
        sent_link(facilitator, plan, mail, address)
    response = invite(facilitator, plan, "c@northwind.example")
    assert response.status_code == 400
    assert (
        "You have sent 2 invitations in the last 24 hours, the most allowed; try again tomorrow."
        in response.content.decode()
    )
    assert Invitation.objects.count() == 2


def test_only_facilitators_invite_and_manage_invitations(
    plan, facilitator, cmo, observer, outsider, mail
):
    sent_link(facilitator, plan, mail, "lena@northwind.example")
    invitation = Invitation.objects.get()
    assert invite(cmo, plan, "zoe@northwind.example").status_code == 403
    assert invite(observer, plan, "zoe@northwind.example").status_code == 403
    assert invite(outsider, plan, "zoe@northwind.example").status_code == 404
    assert cmo.client.post(change_url(plan, invitation), {"action": "revoke"}).status_code == 403
    assert (
        observer.client.post(change_url(plan, invitation), {"action": "revoke"}).status_code == 403
    )
    assert (
        outsider.client.post(change_url(plan, invitation), {"action": "revoke"}).status_code == 404
    )
    assert facilitator.client.get(change_url(plan, invitation)).status_code == 405
    assert facilitator.client.post(change_url(plan, invitation), {"action": "x"}).status_code == 400
    assert facilitator.client.put(members_url(plan)).status_code == 405
    assert Client().put(link_in(mail.messages[0])).status_code == 405
    assert Client().post(members_url(plan), {"email": "z@z.example"}).status_code == 302  # sign in
    assert Invitation.objects.get().state(timezone.now()) == "pending"
    assert len(mail.messages) == 1


# --- mentions reach members only --------------------------------------------------------------


def test_a_pending_invitee_mentioned_in_a_comment_gets_no_email(
    plan, facilitator, cmo, outsider, mail
):
    link = sent_link(facilitator, plan, mail, "otto@example.com")
    choice = StrategicChoice.objects.create(plan=plan, title="Launch a loyalty subscription")
    comments = reverse("planning:choice_comments", args=[plan.slug, choice.pk])
    mail.messages.clear()
    with mail.capture():
        cmo.client.post(comments, {"body": "@otto, click here: http://evil.example"})
    assert Comment.objects.count() == 1
    assert mail.messages == []

    outsider.client.post(link, {"answer": "accept"})
    with mail.capture():
        cmo.client.post(comments, {"body": "@otto welcome aboard"})
    assert [m.envelope_rcpt_tos for m in mail.messages] == [["otto@example.com"]]


def test_subjects_stay_one_line_whatever_the_inviter_is_called(plan, facilitator, mail):
    facilitator.user.first_name = "Fran\r\nBcc: everyone@example.com"
    facilitator.user.save()
    sent_link(facilitator, plan, mail, "lena@northwind.example")
    message = mail.messages[0]
    assert message["Subject"].startswith("Fran Bcc: everyone@example.com Tester invited you")
    assert message.envelope_rcpt_tos == ["lena@northwind.example"]


# --- a plan file started from the web puts no one else in the plan ---------------------------


def test_a_plan_file_from_the_web_adds_no_one_but_its_uploader(outsider, staff, mail):
    data = {
        "name": "Trap",
        "slug": "trap",
        "members": [
            {"username": "otto", "role": "facilitator"},
            {"username": "sam", "role": "observer"},
            {"username": "ghost", "role": "cmo"},
        ],
        "choices": [
            {"title": "Bait", "owner": "sam", "assumptions": [{"statement": "x", "owner": "sam"}]}
        ],
    }
    upload = SimpleUploadedFile("plan.json", json.dumps(data).encode(), "application/json")
    response = outsider.client.post(reverse("planning:new_plan"), {"plan_file": upload})
    assert response["Location"] == reverse("planning:board", args=["trap"])  # no "no user ghost"
    members = Membership.objects.filter(plan__slug="trap")
    assert [(m.user, m.role) for m in members] == [(outsider.user, "facilitator")]
    choice = StrategicChoice.objects.get(title="Bait")
    assert choice.owner is None and choice.assumptions.get().owner is None
    board = outsider.client.get(response["Location"]).content.decode()
    assert "The file also names sam, ghost: people join a plan by accepting an invitation" in board

    with mail.capture():
        outsider.client.post(
            reverse("planning:choice_comments", args=["trap", choice.pk]), {"body": "@sam hi"}
        )
    assert mail.messages == []


def test_the_invite_form_preselects_no_role(plan, facilitator):
    page = facilitator.client.get(members_url(plan)).content.decode()
    assert '<option value="" selected>Choose a role…</option>' in page
    response = invite(facilitator, plan, "new.person@example.com", role="")
    assert response.status_code == 400
    assert "Choose the role they will have in this plan." in response.content.decode()
    assert not Invitation.objects.exists()
