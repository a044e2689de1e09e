"""Shared fixtures: the personas of a planning workshop, and the services tests rely on.

Test-only settings live here, not in a second settings file.
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from config.celery import app as celery_app
from planning.models import Membership, Plan, Role
from planning.services import create_plan

# Nothing a test enqueues reaches the developer's own queues; tests that need a real worker
# point Celery at Redis themselves.
celery_app.conf.broker_url = "memory://"

REQUIRE_SERVICES = os.environ.get("REQUIRE_SERVICES") == "1"
PASSWORD = "workshop-pass-2026"


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix) -> None:
    """No connection pool inside the test process: its tests run up to 50 writers at once in
    threads, each holding its own connection as separate requests of separate processes would.
    The pool is exercised where it matters, by real servers (test_stream_load, the browser)."""
    from django.conf import settings as django_settings

    django_settings.DATABASES["default"].get("OPTIONS", {}).pop("pool", None)


@pytest.fixture(autouse=True)
def _test_settings(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def own_cache(settings):
    """The configured cache (Redis, or files under var/) under a key prefix of this test's own,
    so what a test counts there (the password-reset throttle) starts from zero on every run."""
    settings.CACHES = {
        name: {**config, "KEY_PREFIX": f"test-{uuid.uuid4().hex}"}
        for name, config in settings.CACHES.items()
    }


@pytest.fixture
def tasks_inline():
    """Run enqueued Celery tasks in the test's own thread, for view tests of a whole flow.
    Tasks themselves are tested with a real worker (tests/insights/test_*_worker.py)."""
    celery_app.conf.task_always_eager = True
    celery_app.conf.task_eager_propagates = True
    yield
    celery_app.conf.task_always_eager = False
    celery_app.conf.task_eager_propagates = False


def need_service(name: str, host: str, port: int) -> None:
    """Skip when a service is missing on a developer's machine; fail in CI (REQUIRE_SERVICES=1)."""
    try:
        socket.create_connection((host, port), timeout=1).close()
    except OSError:
        message = f"{name} is not reachable on {host}:{port}"
        if REQUIRE_SERVICES:
            pytest.fail(message + " and REQUIRE_SERVICES=1")
        pytest.skip(message)


@dataclass
class Persona:
    user: object
    membership: Membership | None
    client: Client


def _make_user(username: str, first: str, last: str):
    return get_user_model().objects.create_user(
        username=username,
        password=PASSWORD,
        email=f"{username}@example.com",
        first_name=first,
        last_name=last,
    )


@pytest.fixture
def plan(db) -> Plan:
    return create_plan("FY2027 growth plan", "fy2027")


def _persona(plan: Plan | None, username: str, first: str, role: str | None, **extra) -> Persona:
    user = _make_user(username, first, "Tester")
    membership = (
        Membership.objects.create(plan=plan, user=user, role=role, **extra) if role else None
    )
    client = Client()
    client.force_login(user)
    return Persona(user=user, membership=membership, client=client)


@pytest.fixture
def cmo(plan) -> Persona:
    return _persona(plan, "ana", "Ana", Role.CMO)


@pytest.fixture
def cio(plan) -> Persona:
    return _persona(plan, "maya", "Maya", Role.CIO)


@pytest.fixture
def bu_leader(plan) -> Persona:
    return _persona(plan, "raj", "Raj", Role.BU_LEADER, business_unit="Retail")


@pytest.fixture
def facilitator(plan) -> Persona:
    return _persona(plan, "fran", "Fran", Role.FACILITATOR)


@pytest.fixture
def observer(plan) -> Persona:
    return _persona(plan, "olga", "Olga", Role.OBSERVER)


@pytest.fixture
def outsider(db) -> Persona:
    return _persona(None, "otto", "Otto", None)


@pytest.fixture
def staff(db) -> Persona:
    user = get_user_model().objects.create_superuser(
        username="sam", password=PASSWORD, email="sam@example.com"
    )
    client = Client()
    client.force_login(user)
    return Persona(user=user, membership=None, client=client)


class _Inbox:
    """Collects what the in-process SMTP server receives."""

    def __init__(self) -> None:
        self.messages: list = []

    async def handle_DATA(self, server, session, envelope):  # aiosmtpd handler hook
        from email import message_from_bytes
        from email.policy import default

        message = message_from_bytes(envelope.content, policy=default)
        message.envelope_rcpt_tos = list(envelope.rcpt_tos)
        self.messages.append(message)
        return "250 Message accepted for delivery"


def free_port() -> int:
    # aiosmtpd 1.4.6 cannot bind port 0 itself (FIELD-NOTES): pick a free port first.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def smtp_server(settings):
    """A real SMTP server in-process (aiosmtpd); Django sends to it over the network."""
    from aiosmtpd.controller import Controller

    inbox = _Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    settings.MAILERS = {
        "default": {
            "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "OPTIONS": {"host": "127.0.0.1", "port": port, "timeout": 5},
        }
    }
    inbox.port = port
    yield inbox
    controller.stop()
