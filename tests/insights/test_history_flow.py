"""When histories are computed and where they show (DOMAIN §10): a saved test gets one in the
background, the assumption page says so while it is computed and draws it when it lands, and a
re-test keeps the drift it found on its run, reporting a change of drift like a change of status.
(The points themselves are checked against a reference in test_history.py.)"""

from __future__ import annotations

import datetime as dt
import random
import re
from decimal import Decimal

import pytest
from django.urls import reverse

from insights.models import AssumptionHistory, AssumptionRun, Event
from insights.services.history import current_history
from insights.services.retests import retest_assumption
from insights.services.versions import data_changed
from planning.models import Assumption, StrategicChoice

pytestmark = pytest.mark.django_db

UTC = dt.UTC
HISTORY_JOB = "insights.tasks.compute_history"


def baskets(plan, months: list[float], *, seed: int = 7, per_month: int = 40) -> None:
    """`per_month` purchases in each month of 2025 onwards, valued around that month's mean."""
    rnd = random.Random(seed)
    events = []
    for index, mean in enumerate(months):
        year, month = 2025 + index // 12, index % 12 + 1
        for k in range(per_month):
            at = dt.datetime(year, month, 1 + k % 27, 10, k, tzinfo=UTC)
            value = Decimal(f"{rnd.gauss(mean, 4):.2f}")
            events.append(
                Event(
                    plan=plan,
                    customer_id=f"m{index}-{k}",
                    occurred_at=at,
                    event_type="purchase",
                    value=value,
                    dedupe_key=Event.identity(f"b{index}-{k}", {}, 0),
                )
            )
    Event.objects.bulk_create(events)
    data_changed(plan.pk)


def basket_test(plan, **fields) -> Assumption:
    choice = StrategicChoice.objects.create(plan=plan, title="Premium ranges")
    return Assumption.objects.create(
        choice=choice,
        statement="Baskets average at least 60",
        metric="mean_value",
        params={"event_type": "purchase"},
        comparator=">=",
        threshold=60,
        window_days=28,
        **fields,
    )


def jobs(callbacks) -> list[str]:
    return [job.args[0] for job in callbacks]


def test_a_saved_test_gets_its_history_in_the_background(
    plan, tasks_inline, django_capture_on_commit_callbacks
):
    baskets(plan, [100.0] * 6)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        assumption = basket_test(plan)
    assert HISTORY_JOB in jobs(callbacks)
    plan.refresh_from_db()  # the import moved its data version on
    first = current_history(assumption, plan)
    assert first is not None and first.status == AssumptionHistory.Status.READY
    assert len(first.points) == 6 and {p["status"] for p in first.points} == {"holds"}

    # A changed test is a new history; one left as it was is not computed again.
    assumption.threshold = 120
    with django_capture_on_commit_callbacks(execute=True):
        assumption.save()
    second = current_history(assumption, plan)
    assert second.pk != first.pk and {p["status"] for p in second.points} == {"broken"}
    with django_capture_on_commit_callbacks(execute=True):
        Assumption.objects.get(pk=assumption.pk).save()
    assert AssumptionHistory.objects.filter(assumption=assumption).count() == 2

    # An assumption tracked by hand asks for nothing.
    with django_capture_on_commit_callbacks() as callbacks:
        Assumption.objects.create(choice=assumption.choice, statement="Members like the perks")
    assert HISTORY_JOB not in jobs(callbacks)


def test_the_page_says_the_history_is_computed_then_draws_it(
    plan, cmo, django_capture_on_commit_callbacks, own_cache
):
    baskets(plan, [100.0] * 5)
    with django_capture_on_commit_callbacks():  # saved; its job not run yet
        assumption = basket_test(plan)
    url = reverse("insights:assumption", args=[plan.slug, assumption.pk])

    with django_capture_on_commit_callbacks() as callbacks:
        page = cmo.client.get(url).content.decode()
        cmo.client.get(url)  # a second look does not ask again
    assert jobs(callbacks) == [HISTORY_JOB]
    assert "Computing the history from the customer data…" in page
    assert f'hx-get="{url}?part=history" hx-trigger="every 2s"' in page
    assert 'id="history-figure"' not in page

    from insights.services.history import compute_history

    compute_history(assumption)  # what the worker does
    fragment = cmo.client.get(url + "?part=history", headers={"HX-Request": "true"})
    html = fragment.content.decode()
    assert html.lstrip().startswith('<section id="history"')
    assert "every 2s" not in html and "Computing" not in html
    assert 'id="history-figure"' in html
    assert "5 points of data time from 31 Jan 2025 to" in html
    # The table alternative: one row per point, newest first.
    rows = re.findall(r"<tr><td>(\d+ \w+ \d{4})</td>", html)
    assert rows[1:] == ["30 Apr 2025", "31 Mar 2025", "28 Feb 2025", "31 Jan 2025"]


def test_a_retest_keeps_the_drift_on_its_run_and_reports_its_change(plan):
    # A year at 100, then baskets shrink toward the threshold: still holding, but drifting.
    baskets(plan, [100.0] * 12 + [94.0, 90.0, 86.0, 82.0])
    assumption = basket_test(plan)
    run = retest_assumption(assumption)
    assert run.status == "holds"
    assert run.drift is not None and run.drift["direction"] == "down"
    assert run.drift_changed  # from not drifting (no run before) to drifting
    assumption.refresh_from_db()
    assert assumption.is_drifting and assumption.drift_direction == "down"
    assert assumption.drift_since >= dt.date(2025, 12, 1)
    assert assumption.drift_message == run.drift["message"]
    assert "Mean value" in assumption.drift_message

    again = retest_assumption(assumption)
    assert again.drift == run.drift and not again.drift_changed
    assert AssumptionRun.objects.filter(assumption=assumption).count() == 2


def test_a_test_with_nothing_to_draw_says_so_in_a_sentence_not_empty_axes(plan, cmo, own_cache):
    from insights.services.history import compute_history

    assumption = basket_test(plan)  # untested, and the plan has no customer data at all
    compute_history(assumption)
    url = reverse("insights:assumption", args=[plan.slug, assumption.pk])
    page = cmo.client.get(url).content.decode()
    assert "Not tested yet: this plan has no customer data." in page
    assert 'data-chart="history-figure"' not in page and 'id="history-figure"' not in page

    # Data, but no event of the type the test reads: every period is there, without a value.
    baskets(plan, [100.0] * 4)
    plan.refresh_from_db()  # the import moved its data version on
    Assumption.objects.filter(pk=assumption.pk).update(params={"event_type": "refund"})
    assumption.refresh_from_db()
    compute_history(assumption)
    history = current_history(assumption, plan)
    assert history.points and all(p["observed"] is None for p in history.points)
    page = cmo.client.get(url).content.decode()
    assert "Nothing to draw yet: no customer in the data fits this test in any period." in page
    assert 'data-chart="history-figure"' not in page and 'id="history-figure"' not in page

    # With values to draw, the chart is there and the sentence is not.
    Assumption.objects.filter(pk=assumption.pk).update(params={"event_type": "purchase"})
    assumption.refresh_from_db()
    compute_history(assumption)
    page = cmo.client.get(url).content.decode()
    assert 'id="history-figure"' in page and "Nothing to draw yet" not in page
