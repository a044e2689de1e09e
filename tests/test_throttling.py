"""Throttles on signing in (django-axes: per user name and network address together) and on
password-reset e-mails (per address and per network address, in the cache)."""

from __future__ import annotations

import datetime as dt
import time

import pytest
import time_machine
from asgiref.sync import async_to_sync
from django.test import AsyncClient, Client

from planning.services.accounts import claim_slot
from tests.conftest import PASSWORD, free_port

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("own_cache")]

LOGIN = "/accounts/login/"
LOCKED = "Too many failed sign-in attempts. Try again in 15 minutes."
START = dt.datetime(2026, 11, 16, 9, 0, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def _default_limits(settings):
    """The defaults of config/settings.py, whatever the environment running the tests says."""
    settings.AXES_FAILURE_LIMIT = 5
    settings.AXES_COOLOFF_TIME = dt.timedelta(minutes=15)
    settings.PASSWORD_RESET_LIMIT_PER_ADDRESS = 3
    settings.PASSWORD_RESET_LIMIT_PER_IP = 20


def sign_in(client: Client, username: str, password: str, url: str = LOGIN):
    return client.post(url, {"username": username, "password": password})


def fail(client: Client, username: str, times: int, url: str = LOGIN) -> list[int]:
    return [sign_in(client, username, "wrong-guess", url).status_code for _ in range(times)]


def assert_locked_out(response) -> None:
    assert response.status_code == 429
    page = response.content.decode()
    assert LOCKED in page
    assert "After 5 wrong passwords" in page
    assert '<a class="brand"' in page  # the site's own page, not axes' bare text
    assert "_auth_user_id" not in response.wsgi_request.session


def test_sixty_wrong_passwords_then_the_right_one_does_not_sign_in(cmo):
    client = Client()

    statuses = fail(client, "ana", 60)
    response = sign_in(client, "ana", PASSWORD)

    # The fifth failure reaches the limit; every answer after it is the lockout page.
    assert statuses[:4] == [200] * 4
    assert set(statuses[4:]) == {429}
    assert_locked_out(response)
    assert client.get("/plans/").status_code == 302


def test_the_lock_is_on_the_user_name_and_address_together(cmo, cio):
    attacker = Client(REMOTE_ADDR="203.0.113.7")
    fail(attacker, "ana", 5)

    assert_locked_out(sign_in(attacker, "ana", PASSWORD))
    # Another account from the same address signs in: an office behind one proxy is not locked.
    assert sign_in(attacker, "maya", PASSWORD).status_code == 302
    # Ana from her own address signs in: a stranger cannot lock her out of the workshop.
    assert sign_in(Client(REMOTE_ADDR="198.51.100.20"), "ana", PASSWORD).status_code == 302


def test_a_forwarded_for_header_does_not_change_the_address(cmo):
    """The address is REMOTE_ADDR; behind a proxy, uvicorn sets it (bin/web), never a header
    the client sends itself."""
    attacker = Client(REMOTE_ADDR="203.0.113.7")
    fail(attacker, "ana", 5)

    spoofed = attacker.post(
        LOGIN, {"username": "ana", "password": PASSWORD}, headers={"x-forwarded-for": "192.0.2.1"}
    )

    assert_locked_out(spoofed)


def test_after_the_cool_off_the_right_password_works(cmo):
    client = Client()
    with time_machine.travel(START, tick=False) as traveller:
        fail(client, "ana", 5)
        traveller.shift(dt.timedelta(minutes=14))
        # A try while locked starts the wait again, as the page says.
        assert_locked_out(sign_in(client, "ana", PASSWORD))
        traveller.shift(dt.timedelta(minutes=14))
        assert_locked_out(sign_in(client, "ana", PASSWORD))

        traveller.shift(dt.timedelta(minutes=15, seconds=1))
        response = sign_in(client, "ana", PASSWORD)

        assert response.status_code == 302
        assert client.get("/plans/").status_code == 200


def test_signing_in_clears_the_failures_before_it(cmo):
    client = Client()
    fail(client, "ana", 4)
    assert sign_in(client, "ana", PASSWORD).status_code == 302

    assert fail(Client(), "ana", 4) == [200] * 4


def test_the_limit_and_cool_off_come_from_the_settings(cmo, settings):
    settings.AXES_FAILURE_LIMIT = 2
    settings.AXES_COOLOFF_TIME = dt.timedelta(minutes=1)
    client = Client()

    assert fail(client, "ana", 2) == [200, 429]

    page = sign_in(client, "ana", PASSWORD).content.decode()
    assert "Try again in 1 minute." in page
    assert "After 2 wrong passwords" in page


def test_the_back_office_sign_in_is_locked_too(staff):
    client = Client()
    admin_login = "/admin/login/?next=/admin/"

    fail(client, "sam", 5, admin_login)
    response = sign_in(client, "sam", PASSWORD, admin_login)

    assert_locked_out(response)
    assert client.get("/admin/").status_code == 302


def test_the_lockout_page_under_asgi(cmo):
    """Production serves ASGI (uvicorn), where axes' middleware takes its async path."""

    async def scenario():
        client = AsyncClient()
        for _ in range(5):
            await client.post(LOGIN, {"username": "ana", "password": "wrong-guess"})
        return await client.post(LOGIN, {"username": "ana", "password": PASSWORD})

    response = async_to_sync(scenario)()

    assert response.status_code == 429
    assert LOCKED in response.content.decode()


# --- Password reset ---------------------------------------------------------------------------

RESET = "/accounts/password_reset/"


def ask_reset(client: Client, email: str):
    return client.post(RESET, {"email": email})


def answer(response) -> tuple:
    return response.status_code, response.headers.get("Location"), response.content


def test_password_reset_sends_at_most_three_mails_an_hour_to_an_address(cmo, smtp_server, settings):
    settings.PASSWORD_RESET_LIMIT_PER_IP = 100  # this test is about the limit per address
    client = Client()

    known = [answer(ask_reset(client, "ana@example.com")) for _ in range(10)]
    unknown = [answer(ask_reset(client, "nobody@example.com")) for _ in range(10)]

    assert len(smtp_server.messages) == 3
    assert {tuple(m.envelope_rcpt_tos) for m in smtp_server.messages} == {("ana@example.com",)}
    # The same answer every time, known address or not, mail sent or not.
    assert set(known) == set(unknown) == {(302, "/accounts/password_reset/done/", b"")}
    # Another way to write the address is the same address.
    ask_reset(client, " ANA@example.com")
    assert len(smtp_server.messages) == 3
    page = client.get("/accounts/password_reset/done/").content.decode()
    assert "If an account uses that address, a link to choose a new password" in page


def test_a_slot_frees_itself_when_its_window_ends():
    """The hour is a sliding window: each request's slot expires on its own (real cache, real
    time: Redis keeps its own clock, so a one-second window stands in for the hour)."""
    assert [claim_slot("test", "ana@example.com", 2, window=1) for _ in range(3)] == [
        True,
        True,
        False,
    ]
    assert claim_slot("test", "maya@example.com", 2, window=1)

    time.sleep(1.2)

    assert claim_slot("test", "ana@example.com", 2, window=1)


def test_password_reset_sends_at_most_the_limit_from_one_address(
    cmo, cio, bu_leader, facilitator, observer, outsider, smtp_server, settings
):
    settings.PASSWORD_RESET_LIMIT_PER_IP = 4
    emails = ["ana", "maya", "raj", "fran", "olga", "otto"]
    one_network = Client(REMOTE_ADDR="203.0.113.7")

    answers = {answer(ask_reset(one_network, f"{name}@example.com")) for name in emails}

    assert answers == {(302, "/accounts/password_reset/done/", b"")}
    assert [m.envelope_rcpt_tos for m in smtp_server.messages] == [
        ["ana@example.com"],
        ["maya@example.com"],
        ["raj@example.com"],
        ["fran@example.com"],
    ]
    # Another network still gets its mail through.
    ask_reset(Client(REMOTE_ADDR="198.51.100.20"), "otto@example.com")
    assert smtp_server.messages[-1].envelope_rcpt_tos == ["otto@example.com"]


def test_with_the_cache_down_a_password_reset_still_goes_out(cmo, smtp_server, settings):
    """Fails open: a member must be able to get back in while Redis is down."""
    nothing_listens = f"redis://127.0.0.1:{free_port()}/0"
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": nothing_listens,
        }
    }

    response = ask_reset(Client(), "ana@example.com")

    assert answer(response) == (302, "/accounts/password_reset/done/", b"")
    assert [m.envelope_rcpt_tos for m in smtp_server.messages] == [["ana@example.com"]]
