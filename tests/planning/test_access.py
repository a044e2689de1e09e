"""One access rule for every plan URL: members read, observers never write, outsiders see nothing."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.test import Client
from django.urls import reverse

from planning.models import Plan
from planning.views.access import get_plan_for_user, require_editor, require_facilitator
from tests.conftest import _persona

pytestmark = pytest.mark.django_db

# Every page under /plans/<slug>/; a new plan URL is added here and inherits these checks.
PLAN_PAGES = [
    "planning:board",
    "planning:members",
    "planning:activity",
    "planning:settings",
    "planning:plan_file",
    "insights:imports",
    "insights:event_map",
    "insights:assumption_map",
    "insights:data_source",
    "insights:customers",
    "insights:stage_strip",
]
MEMBERS = ["cmo", "cio", "bu_leader", "facilitator", "observer"]
# Parts of a page that htmx asks for: no page of their own, so no plan name in them.
FRAGMENTS = {"insights:stage_strip"}


@pytest.mark.parametrize("url_name", PLAN_PAGES)
@pytest.mark.parametrize("persona", MEMBERS)
def test_members_see_every_plan_page(request, plan, url_name, persona):
    who = request.getfixturevalue(persona)
    response = who.client.get(reverse(url_name, args=[plan.slug]))
    assert response.status_code == 200
    assert url_name in FRAGMENTS or plan.name.encode() in response.content


@pytest.mark.parametrize("url_name", PLAN_PAGES)
def test_outsiders_get_404_that_says_nothing_of_the_plan(plan, outsider, url_name):
    response = outsider.client.get(reverse(url_name, args=[plan.slug]))
    missing = outsider.client.get(reverse(url_name, args=["no-such-plan"]))
    assert response.status_code == missing.status_code == 404
    assert plan.name.encode() not in response.content


@pytest.mark.parametrize("url_name", PLAN_PAGES)
def test_staff_who_are_not_members_get_404_too(plan, staff, url_name):
    assert staff.client.get(reverse(url_name, args=[plan.slug])).status_code == 404


@pytest.mark.parametrize("url_name", PLAN_PAGES)
def test_anonymous_visitors_are_sent_to_sign_in(plan, url_name):
    url = reverse(url_name, args=[plan.slug])
    response = Client().get(url)
    assert response.status_code == 302
    assert response.headers["Location"] == f"/accounts/login/?next={url}"


# Pages that take a POST (a form on the page itself); the others are read-only.
POSTING_PAGES = {
    "insights:imports",
    "insights:event_map",
    "insights:data_source",
    "planning:members",
}
# Settings take a POST from every member for their own e-mail preferences (tested on its own).
SELF_SERVICE_PAGES = {"planning:settings"}


@pytest.mark.parametrize("url_name", sorted(set(PLAN_PAGES) - POSTING_PAGES - SELF_SERVICE_PAGES))
def test_read_only_pages_refuse_writes_by_method(plan, cmo, url_name):
    assert cmo.client.post(reverse(url_name, args=[plan.slug])).status_code == 405


@pytest.mark.parametrize("url_name", sorted(POSTING_PAGES))
def test_observers_cannot_post_and_outsiders_get_404(plan, observer, outsider, url_name):
    url = reverse(url_name, args=[plan.slug])
    assert observer.client.post(url, {}).status_code == 403
    assert outsider.client.post(url, {}).status_code == 404


def test_plan_list_shows_only_my_plans(plan, cmo, outsider):
    from planning.services import create_plan

    other = create_plan("Secret acquisition plan", "secret")
    _persona(other, "zoe", "Zoe", "cio")
    mine = cmo.client.get(reverse("planning:plan_list"))
    assert b"FY2027 growth plan" in mine.content
    assert b"Secret acquisition plan" not in mine.content
    assert b"No plans yet" in outsider.client.get(reverse("planning:plan_list")).content


def test_the_plan_list_counts_every_member_and_choice(
    plan, cmo, cio, bu_leader, facilitator, observer
):
    from planning.models import Membership, StrategicChoice
    from planning.services import create_plan

    for title in ("Loyalty", "Self-service", "Marketplace"):
        StrategicChoice.objects.create(plan=plan, title=title)
    other = create_plan("Secret acquisition plan", "secret")
    _persona(other, "zoe", "Zoe", "cio")
    Membership.objects.create(plan=other, user=observer.user, role="observer")
    StrategicChoice.objects.create(plan=other, title="Buy a rival")
    # Each plan counts all its members, not the one who is looking (who was "1 member").
    html = observer.client.get(reverse("planning:plan_list")).content.decode()
    assert "Observer · 5 members · 3 strategic choices</p>" in html
    assert "Observer · 2 members · 1 strategic choice</p>" in html


def test_access_helper_by_persona(plan, cmo, facilitator, observer, outsider):
    found, membership = get_plan_for_user(cmo.user, plan.slug)
    assert found == plan and membership.role == "cmo"
    require_editor(membership)
    with pytest.raises(PermissionDenied):
        require_facilitator(membership)
    require_facilitator(get_plan_for_user(facilitator.user, plan.slug)[1])

    _, read_only = get_plan_for_user(observer.user, plan.slug)
    with pytest.raises(PermissionDenied):
        require_editor(read_only)
    with pytest.raises(Http404):
        get_plan_for_user(outsider.user, plan.slug)
    assert Plan.objects.filter(slug=plan.slug).exists()


def test_services_never_answer_in_http():
    """404 and 403 are the views' answer (planning/views/access.py); a service raises errors of
    its own, so a task, a command or the back-office can call it."""
    root = Path(__file__).resolve().parents[2]
    modules = [
        *sorted((root / "planning" / "services").glob("*.py")),
        *sorted((root / "insights" / "services").glob("*.py")),
        root / "lifecycle" / "services.py",
    ]
    assert len(modules) > 5
    for path in modules:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = {alias.name for alias in node.names}
                where = f"{path.relative_to(root)}: from {node.module} import {names}"
                assert node.module not in {"django.http", "django.shortcuts"}, where
                assert "PermissionDenied" not in names, where
