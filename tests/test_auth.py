"""Signing in and out, and resetting a forgotten password by e-mail over real SMTP."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from tests.conftest import PASSWORD

# The password-reset throttle counts in the cache: each test counts from zero.
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("own_cache")]


def test_sign_in_lands_on_the_plan_list(cmo):
    client = Client()
    page = client.get("/accounts/login/")
    assert page.status_code == 200
    assert b"Sign in" in page.content
    response = client.post("/accounts/login/", {"username": "ana", "password": PASSWORD})
    assert response.status_code == 302
    assert response.headers["Location"] == "/plans/"
    assert client.get("/plans/").status_code == 200


def test_wrong_password_is_refused_with_a_clear_message(cmo):
    client = Client()
    response = client.post("/accounts/login/", {"username": "ana", "password": "nope"})
    assert response.status_code == 200
    assert b"enter a correct username and password" in response.content
    assert "_auth_user_id" not in client.session


def test_pages_need_sign_in():
    response = Client().get("/plans/")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/accounts/login/?next=/plans/")


def test_sign_out_is_a_post(cmo):
    assert cmo.client.get("/accounts/logout/").status_code == 405
    response = cmo.client.post("/accounts/logout/")
    assert response.status_code == 302
    assert cmo.client.get("/plans/").status_code == 302


def test_password_reset_by_email_over_smtp(cmo, smtp_server):
    client = Client()
    response = client.post("/accounts/password_reset/", {"email": "ana@example.com"})
    assert response.status_code == 302
    assert len(smtp_server.messages) == 1
    message = smtp_server.messages[0]
    assert message.envelope_rcpt_tos == ["ana@example.com"]
    assert message["Subject"] == "Choose a new Outside-In password"
    body = message.get_body(preferencelist=("plain",)).get_content()
    assert body.startswith("Hello Ana Tester,\r\n")
    link = re.search(r"http://testserver(/accounts/reset/\S+/)", body).group(1)

    form = client.get(link, follow=True)
    assert b"Choose a new password" in form.content
    new_password = "a-much-better-passphrase-42"
    done = client.post(
        form.redirect_chain[-1][0],
        {"new_password1": new_password, "new_password2": new_password},
    )
    assert done.status_code == 302
    assert get_user_model().objects.get(username="ana").check_password(new_password)
    # The link works once.
    assert b"no longer works" in client.get(link, follow=True).content


def test_password_reset_for_an_unknown_address_sends_nothing(db, smtp_server):
    response = Client().post("/accounts/password_reset/", {"email": "nobody@example.com"})
    assert response.status_code == 302
    assert smtp_server.messages == []
