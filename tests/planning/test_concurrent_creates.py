"""Twenty members create an item with the same title at the same moment: one is created, and
every other one hears what the form says of a duplicate, never a server error. PostgreSQL, real
threads, each with its own connection and its own browser session."""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from django.db import connection, connections
from django.test import Client
from django.urls import reverse

from lifecycle.models import Stage
from planning.models import (
    DUPLICATE_CHOICE_TITLE,
    DUPLICATE_INITIATIVE_TITLE,
    DUPLICATE_STAGE_NAME,
    DUPLICATE_STATEMENT,
    Assumption,
    BTInitiative,
    StrategicChoice,
)
from planning.services.editing import NameTaken, create_item, save_item, snapshot

from ..conftest import REQUIRE_SERVICES

MEMBERS = 20


def _needs_postgresql() -> None:
    if connection.vendor != "postgresql":
        message = "twenty concurrent creates need PostgreSQL (set DATABASE_URL)"
        if REQUIRE_SERVICES:
            pytest.fail(message + " and REQUIRE_SERVICES=1")
        pytest.skip(message)


def post_at_once(user, address: str, data: dict, headers: dict) -> list:
    """Each of MEMBERS browsers posts `data` at the same moment; their responses (or errors)."""
    clients = []
    for _ in range(MEMBERS):
        client = Client(raise_request_exception=False)  # a 500 is counted, not raised
        client.force_login(user)
        clients.append(client)
    results: list = [None] * MEMBERS
    # A browser that cannot start breaks the barrier for all: the test fails with the cause.
    start = threading.Barrier(MEMBERS, timeout=60)

    def post(i: int) -> None:
        try:
            start.wait()
            results[i] = clients[i].post(address, data, headers=headers)
        except Exception as error:
            start.abort()
            results[i] = error
        finally:
            connections.close_all()

    threads = [threading.Thread(target=post, args=(i,)) for i in range(MEMBERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results


CASES = {
    "choice": (StrategicChoice, "title", DUPLICATE_CHOICE_TITLE),
    "assumption": (Assumption, "statement", DUPLICATE_STATEMENT),
    "initiative": (BTInitiative, "title", DUPLICATE_INITIATIVE_TITLE),
    "stage": (Stage, "name", DUPLICATE_STAGE_NAME),
}


def new_item_address(plan, kind: str) -> str:
    if kind == "assumption":
        choice = StrategicChoice.objects.create(plan=plan, title="Launch a loyalty subscription")
        return reverse("planning:assumption_new", args=[plan.slug, choice.pk])
    return reverse(f"planning:{kind}_new", args=[plan.slug])


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("htmx", [False, True], ids=["plain", "htmx"])
@pytest.mark.parametrize("kind", list(CASES))
def test_twenty_concurrent_creates_of_one_title_make_one_and_nineteen_form_errors(
    plan, cmo, facilitator, kind, htmx
):
    _needs_postgresql()
    model, field, message = CASES[kind]
    author = facilitator if kind == "stage" else cmo
    before = model._default_manager.count()
    address = new_item_address(plan, kind)
    data = {field: "Open a self-service help centre", "importance": 3, "evidence": 1}
    data |= {"horizon": "now", "status": "proposed", "min_sample": 30}

    results = post_at_once(author.user, address, data, {"HX-Request": "true"} if htmx else {})

    errors = [r for r in results if isinstance(r, Exception)]
    assert errors == []
    statuses = Counter(r.status_code for r in results)
    created_status = 200 if htmx else 302
    assert statuses == {created_status: 1, 422: MEMBERS - 1}, statuses
    refused = [r for r in results if r.status_code == 422]
    assert all(message in r.content.decode() for r in refused)
    # The refusal is the form again, with what was typed, ready to change.
    assert all("Open a self-service help centre" in r.content.decode() for r in refused)
    assert model._default_manager.count() == before + 1
    assert model._default_manager.filter(**{field: data[field]}).count() == 1


# --- the same refusal without threads: the service meets the constraint itself -----------------


@pytest.mark.django_db
def test_a_create_that_meets_the_unique_constraint_says_what_the_form_says(plan, cmo):
    create_item("choice", plan, cmo.user, {"title": "Loyalty"})

    with pytest.raises(NameTaken) as refused:
        create_item("choice", plan, cmo.user, {"title": "Loyalty"})

    assert refused.value.message_dict == {"title": [DUPLICATE_CHOICE_TITLE]}
    assert StrategicChoice.objects.filter(title="Loyalty").count() == 1


@pytest.mark.django_db
def test_a_rename_that_meets_the_unique_constraint_says_what_the_form_says(plan, facilitator):
    create_item("stage", plan, facilitator.user, {"name": "Advocate"})
    stage = plan.stages.get(name="Use")
    base = snapshot(stage)

    with pytest.raises(NameTaken) as refused:
        save_item(
            stage,
            facilitator.user,
            base_version=stage.version,
            base=base,
            mine={"name": "ADVOCATE"},
        )

    assert refused.value.message_dict == {"name": [DUPLICATE_STAGE_NAME]}
    assert plan.stages.get(pk=stage.pk).name == "Use"
