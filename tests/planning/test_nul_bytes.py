"""A NUL byte anywhere in a request: PostgreSQL text cannot hold one, so the request is answered
400 with a message before any view reads it, never a 500 from deep in a query."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from planning.middleware import NUL_REFUSED
from planning.models import Comment, Plan, Presence, StrategicChoice
from planning.planfile import PlanFileError, import_plan

pytestmark = pytest.mark.django_db

MESSAGE = "Your request contains a character we cannot store (a NUL byte)."


@pytest.fixture
def choice(plan):
    return StrategicChoice.objects.create(plan=plan, title="Launch a loyalty subscription")


def client_of(persona) -> Client:
    """The persona's session, in a client that answers 500 instead of raising: what a browser
    would get."""
    client = Client(raise_request_exception=False)
    client.cookies = persona.client.cookies
    return client


def refused(response) -> bool:
    return response.status_code == 400 and MESSAGE in response.content.decode()


def test_the_message_is_plain_words():
    assert NUL_REFUSED.startswith(MESSAGE)


def test_a_board_filter_with_a_nul_byte_is_refused(plan, cmo, choice):
    board = reverse("planning:board", args=[plan.slug])
    client = client_of(cmo)

    for name in ["bu", "status", "horizon", "owner"]:
        assert refused(client.get(board, {name: "Retail\x00"})), name
    assert refused(client.get(board, {"bu\x00": "Retail"}))
    # Without it, the same filter works.
    assert client.get(board, {"bu": "Retail"}).status_code == 200


def test_a_comment_with_a_nul_byte_is_refused_and_not_stored(plan, cmo, choice):
    address = reverse("planning:choice_comments", args=[plan.slug, choice.pk])
    client = client_of(cmo)

    assert refused(client.post(address, {"body": "Good idea\x00, but costly"}))
    assert refused(client.post(address, {"body": "Good idea\x00"}, headers={"HX-Request": "true"}))
    assert Comment.objects.count() == 0
    assert client.post(address, {"body": "Good idea, but costly"}).status_code == 302
    assert Comment.objects.get().body == "Good idea, but costly"


def test_a_presence_field_with_a_nul_byte_is_refused(plan, cmo):
    Presence.objects.create(
        plan=plan,
        user=cmo.user,
        connection="c" * 32,
        editing="",
        last_seen=dt.datetime(2026, 11, 1, tzinfo=dt.UTC),
    )
    address = reverse("planning:presence", args=[plan.slug])
    client = client_of(cmo)

    assert refused(client.post(address, {"connection": "c" * 32, "editing": "choice-1\x00"}))
    assert refused(client.post(address, {"connection": "c" * 31 + "\x00", "editing": ""}))
    assert Presence.objects.get().editing == ""
    assert client.post(address, {"connection": "c" * 32, "editing": "choice-1"}).status_code == 204
    assert Presence.objects.get().editing == "choice-1"


def test_a_form_field_beside_an_upload_is_checked_the_file_is_not(outsider):
    client = client_of(outsider)
    upload = SimpleUploadedFile("plan.json", b"{}", "application/json")

    response = client.post(reverse("planning:new_plan"), {"name": "X\x00", "plan_file": upload})

    assert refused(response)
    assert Plan.objects.count() == 0


def test_a_nul_byte_in_a_plan_file_is_named_where_it_is(outsider, db):
    data = {"name": "Growth", "slug": "growth", "description": "Up\x00", "event_map": {}}
    data["choices"] = [{"title": "Loyalty", "rationale": "Because\x00"}]

    with pytest.raises(PlanFileError) as error:
        import_plan(data)

    assert error.value.errors == [
        "description: holds a character we cannot store (a NUL byte, written \\u0000)",
        "choices[0].rationale: holds a character we cannot store (a NUL byte, written \\u0000)",
    ]
    upload = SimpleUploadedFile("plan.json", json.dumps(data).encode(), "application/json")
    response = client_of(outsider).post(reverse("planning:new_plan"), {"plan_file": upload})
    assert response.status_code == 400
    assert "description: holds a character we cannot store" in response.content.decode()
    assert Plan.objects.count() == 0


def test_a_session_cookie_with_a_nul_byte_is_dropped_not_a_server_error(plan):
    client = Client(raise_request_exception=False, HTTP_COOKIE='sessionid="abcdefgh\\000ijk"')

    response = client.get(reverse("planning:board", args=[plan.slug]))

    # A cookie we never set: the visitor is simply not signed in.
    assert response.status_code == 302
    assert response.headers["Location"].startswith(reverse("login"))
