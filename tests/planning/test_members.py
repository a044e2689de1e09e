"""Facilitators manage members: add (inviting newcomers by e-mail), change roles, remove."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from planning.models import Activity, Membership

pytestmark = pytest.mark.django_db


def members_url(plan):
    return reverse("planning:members", args=[plan.slug])


def test_facilitator_adds_an_existing_user_by_user_name(plan, facilitator, outsider):
    response = facilitator.client.post(members_url(plan), {"person": "otto", "role": "cio"})
    assert response.status_code == 302
    assert Membership.objects.get(plan=plan, user=outsider.user).role == "cio"
    assert Activity.objects.filter(plan=plan, item_type="member", action="created").exists()
    assert outsider.client.get(reverse("planning:board", args=[plan.slug])).status_code == 200


def test_a_newcomer_is_invited_by_email_and_chooses_a_password(
    plan, facilitator, smtp_server, tasks_inline, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        facilitator.client.post(
            members_url(plan),
            {
                "person": "lena@northwind.example",
                "first_name": "Lena",
                "last_name": "Berg",
                "role": "bu_leader",
                "business_unit": "Online",
            },
        )
    user = get_user_model().objects.get(email="lena@northwind.example")
    member = Membership.objects.get(plan=plan, user=user)
    assert (member.role, member.business_unit, user.username) == ("bu_leader", "Online", "lena")
    assert not user.has_usable_password()
    message = smtp_server.messages[0]
    assert message["Subject"] == "Fran Tester invited you to “FY2027 growth plan” on Outside-In"
    body = message.get_content()
    assert "as BU leader for Online" in body
    link = re.search(r"http://127\.0\.0\.1:8000(/accounts/reset/\S+/)", body).group(1)
    client = Client()
    form = client.get(link, follow=True)
    password = "a-new-member-passphrase-7"
    client.post(form.redirect_chain[-1][0], {"new_password1": password, "new_password2": password})
    assert client.login(username="lena", password=password)


def test_bad_additions_are_explained_and_nothing_is_added(plan, facilitator, cmo):
    cases = [
        ({"person": "ghost", "role": "cio"}, "No one has the user name “ghost”"),
        ({"person": "ana", "role": "cio"}, "is a member already"),
        ({"person": "zoe@example.com", "role": "bu_leader"}, "A BU leader names the business unit"),
    ]
    for data, message in cases:
        response = facilitator.client.post(members_url(plan), data)
        assert response.status_code == 400
        assert message in response.content.decode()
    assert plan.memberships.count() == 2


def test_change_role_and_remove(plan, facilitator, cmo):
    url = reverse("planning:member_change", args=[plan.slug, cmo.membership.pk])
    facilitator.client.post(url, {"role": "bu_leader", "business_unit": "Stores"})
    cmo.membership.refresh_from_db()
    assert (cmo.membership.role, cmo.membership.business_unit) == ("bu_leader", "Stores")
    facilitator.client.post(url, {"role": "bu_leader", "business_unit": "Stores", "remove": "1"})
    assert not Membership.objects.filter(pk=cmo.membership.pk).exists()
    assert cmo.client.get(reverse("planning:board", args=[plan.slug])).status_code == 404


def test_the_last_facilitator_stays(plan, facilitator):
    url = reverse("planning:member_change", args=[plan.slug, facilitator.membership.pk])
    page = facilitator.client.post(url, {"role": "cmo"}, follow=True).content.decode()
    assert "A plan needs at least one facilitator" in page
    facilitator.membership.refresh_from_db()
    assert facilitator.membership.role == "facilitator"


def test_only_facilitators_manage_members(plan, cmo, observer, outsider, facilitator):
    url = reverse("planning:member_change", args=[plan.slug, facilitator.membership.pk])
    assert cmo.client.post(members_url(plan), {"person": "olga", "role": "cio"}).status_code == 403
    assert cmo.client.post(url, {"role": "observer"}).status_code == 403
    assert observer.client.post(url, {"remove": "1"}).status_code == 403
    assert outsider.client.post(url, {"remove": "1"}).status_code == 404
    assert Membership.objects.get(pk=facilitator.membership.pk).role == "facilitator"
    assert cmo.client.get(url).status_code == 405
