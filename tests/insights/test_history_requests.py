"""Which saves ask for a history (DOMAIN §10): a new test or a changed one, and a plan's new
period; a save that leaves them as the histories have them sends no job to the workers."""

from __future__ import annotations

import functools

import pytest

from insights.services.history import compute_history
from planning.models import Assumption, Plan
from planning.services import save_item, save_period, snapshot
from tests.insights.test_history_flow import basket_test

pytestmark = pytest.mark.django_db

HISTORY_JOB = "insights.tasks.compute_history"
PLAN_HISTORY_JOB = "insights.tasks.compute_plan_history"


def jobs(callbacks) -> list[str]:
    return [job.args[0] for job in callbacks if isinstance(job, functools.partial)]


@pytest.fixture
def with_history(plan) -> Assumption:
    """A tested assumption (its threshold typed as 60, stored as 60.0) and its history."""
    assumption = basket_test(plan)
    compute_history(assumption)  # what the worker does with the job its creation sent
    return Assumption.objects.get(pk=assumption.pk)


def test_a_new_test_asks_for_its_history(plan, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        tested = basket_test(plan)
        Assumption.objects.create(choice=tested.choice, statement="Members like the perks")
    assert jobs(callbacks) == [HISTORY_JOB]


def test_a_reworded_statement_asks_for_nothing(
    with_history, cmo, django_capture_on_commit_callbacks
):
    base = snapshot(with_history)
    with django_capture_on_commit_callbacks() as callbacks:
        save_item(
            with_history,
            cmo.user,
            base_version=with_history.version,
            base=base,
            mine={**base, "statement": "Baskets average 60 or more"},
        )
        with_history.owner = cmo.membership
        with_history.save(update_fields=["owner"])
        Assumption.objects.get(pk=with_history.pk).save()  # read back: 60.0, not 60
    assert Assumption.objects.get(pk=with_history.pk).statement == "Baskets average 60 or more"
    assert jobs(callbacks) == []


def test_a_changed_test_asks_for_its_history(with_history, django_capture_on_commit_callbacks):
    for field, value in [("threshold", 80.0), ("window_days", 56), ("segment", "smb")]:
        setattr(with_history, field, value)
        with django_capture_on_commit_callbacks() as callbacks:
            with_history.save()
        assert jobs(callbacks) == [HISTORY_JOB], field
    compute_history(with_history)
    with django_capture_on_commit_callbacks() as callbacks:
        with_history.save(update_fields=["segment"])  # as its history has it now
    assert jobs(callbacks) == []


def test_a_test_changed_back_asks_for_nothing_new(with_history, django_capture_on_commit_callbacks):
    """Its history of the first test is still there (of the same data): nothing to compute."""
    with_history.threshold = 80
    with_history.save()
    compute_history(with_history)
    with_history.threshold = 60
    with django_capture_on_commit_callbacks() as callbacks:
        with_history.save()
    assert jobs(callbacks) == []


def test_a_new_period_asks_for_the_plans_histories(
    plan, facilitator, with_history, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as callbacks:
        save_period(plan, facilitator.user, "week")
    assert jobs(callbacks) == [PLAN_HISTORY_JOB]

    # A whole-row save (the admin's) while the histories are still per month asks again.
    stored = Plan.objects.get(pk=plan.pk)
    with django_capture_on_commit_callbacks() as callbacks:
        stored.save()
    assert jobs(callbacks) == [PLAN_HISTORY_JOB]


def test_a_renamed_plan_asks_for_nothing(plan, with_history, django_capture_on_commit_callbacks):
    stored = Plan.objects.get(pk=plan.pk)
    stored.name = "FY2027 growth plan, revised"
    with django_capture_on_commit_callbacks() as callbacks:
        stored.save()
        stored.save(update_fields=["name", "updated_at"])
        Plan.objects.create(name="Another plan", slug="another")
    assert jobs(callbacks) == []
