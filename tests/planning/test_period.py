"""The plan's period (DOMAIN §8, §10): set by a facilitator on the settings page, recorded, and
followed by the plan's assumption histories."""

from __future__ import annotations

import functools

import pytest
from django.urls import reverse

from planning.models import Activity, Plan

pytestmark = pytest.mark.django_db

PLAN_HISTORY_JOB = "insights.tasks.compute_plan_history"


def test_a_facilitator_draws_the_plan_per_week(
    plan, facilitator, django_capture_on_commit_callbacks
):
    url = reverse("planning:settings", args=[plan.slug])
    page = facilitator.client.get(url).content.decode()
    assert "Draw customer figures and assumption history per" in page
    with django_capture_on_commit_callbacks() as callbacks:
        response = facilitator.client.post(url, {"period-period": "week"})
    assert response.status_code == 302
    assert Plan.objects.get(pk=plan.pk).period == "week"
    sent = [job.args[0] for job in callbacks if isinstance(job, functools.partial)]
    assert PLAN_HISTORY_JOB in sent
    entry = Activity.objects.filter(plan=plan, item_type="period").get()
    assert (entry.before, entry.after) == ({"period": "month"}, {"period": "week"})
    # The same period again changes nothing and records nothing.
    facilitator.client.post(url, {"period-period": "week"})
    assert Activity.objects.filter(plan=plan, item_type="period").count() == 1


def test_only_a_facilitator_sets_the_period(plan, cmo, observer):
    url = reverse("planning:settings", args=[plan.slug])
    for persona in (cmo, observer):
        assert persona.client.post(url, {"period-period": "week"}).status_code == 403
    assert "Only a facilitator can change the period." in observer.client.get(url).content.decode()
    assert Plan.objects.get(pk=plan.pk).period == "month"


def test_an_unknown_period_is_refused_with_a_message(plan, facilitator):
    url = reverse("planning:settings", args=[plan.slug])
    response = facilitator.client.post(url, {"period-period": "fortnight"})
    assert response.status_code == 400
    assert "Select a valid choice. fortnight is not one of the available choices." in (
        response.content.decode()
    )
    assert Plan.objects.get(pk=plan.pk).period == "month"
