"""Starting a plan in the web app: blank, or from a plan file; downloading the plan file."""

from __future__ import annotations

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from planning.models import Activity, Membership, Plan

pytestmark = pytest.mark.django_db


def test_a_new_blank_plan_is_facilitated_by_its_creator(outsider):
    response = outsider.client.post(
        reverse("planning:new_plan"), {"name": "Growth", "slug": "growth"}
    )
    plan = Plan.objects.get(slug="growth")
    assert response.headers["Location"] == reverse("planning:board", args=["growth"])
    assert Membership.objects.get(plan=plan, user=outsider.user).role == "facilitator"
    assert plan.stages.count() == 6
    assert Activity.objects.filter(plan=plan, action="created").exists()


def test_new_plan_needs_a_name_or_a_file_and_a_free_slug(plan, outsider):
    empty = outsider.client.post(reverse("planning:new_plan"), {})
    assert empty.status_code == 400
    assert "Give the plan a name and a short name, or choose a plan file." in empty.content.decode()
    taken = outsider.client.post(reverse("planning:new_plan"), {"name": "X", "slug": plan.slug})
    assert "A plan already uses this short name" in taken.content.decode()
    reserved = outsider.client.post(reverse("planning:new_plan"), {"name": "X", "slug": "new"})
    assert "“new” is reserved" in reserved.content.decode()
    assert Plan.objects.count() == 1


def test_download_the_plan_file_and_start_another_plan_from_it(plan, cmo, outsider):
    response = cmo.client.get(reverse("planning:plan_file", args=[plan.slug]))
    assert response["Content-Disposition"] == 'attachment; filename="fy2027.json"'
    data = json.loads(response.content)
    assert data["slug"] == "fy2027"
    data["slug"] = "fy2028"
    data["name"] = "FY2028 plan"
    upload = SimpleUploadedFile("plan.json", json.dumps(data).encode(), "application/json")
    created = cmo.client.post(reverse("planning:new_plan"), {"plan_file": upload})
    assert created.status_code == 302
    copy = Plan.objects.get(slug="fy2028")
    assert Membership.objects.get(plan=copy, user=cmo.user).role in {"cmo", "facilitator"}
    assert outsider.client.get(reverse("planning:plan_file", args=[plan.slug])).status_code == 404


def test_a_bad_plan_file_lists_every_error_and_creates_nothing(outsider):
    bad = {
        "name": "X",
        "slug": "x",
        "colour": "red",
        "event_map": {"visit": "ghost"},
        "members": [{"username": "otto", "role": "cmo"}],
    }
    upload = SimpleUploadedFile("plan.json", json.dumps(bad).encode(), "application/json")
    response = outsider.client.post(reverse("planning:new_plan"), {"plan_file": upload})
    html = response.content.decode()
    assert response.status_code == 400
    assert "nothing was created" in html
    assert "colour" in html and "ghost" in html
    assert not Plan.objects.filter(slug="x").exists()


def test_a_file_for_an_existing_plan_is_refused(plan, outsider, cmo):
    data = cmo.client.get(reverse("planning:plan_file", args=[plan.slug])).json()
    upload = SimpleUploadedFile("plan.json", json.dumps(data).encode(), "application/json")
    response = outsider.client.post(reverse("planning:new_plan"), {"plan_file": upload})
    assert "exists already" in response.content.decode()
    assert not Membership.objects.filter(user=outsider.user).exists()
