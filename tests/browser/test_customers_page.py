"""The Customers page in the browser: every chart drawn by the static script from the page's
JSON under the strict CSP, the lifetime value fitted by a real Celery worker while the page
waits, and "Make this an assumption" on a loyalty figure ending in a tested assumption whose
value at as_of is the figure shown."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from insights.metrics import latest_event_at, measure
from lifecycle.models import EventMapping
from planning.models import Assumption, StrategicChoice
from tests.insights.test_metrics import generate, store

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

WORKER_MS = 60_000  # a fit queued for a worker that may still be starting
EVENT_MAP = {
    "visit": "Explore",
    "signup": "Buy",
    "purchase": "Buy",
    "login": "Use",
    "survey": "Engage",
}


def seed(plan) -> None:
    stages = {s.name: s for s in plan.stages.all()}
    EventMapping.objects.bulk_create(
        EventMapping(plan=plan, event_type=t, stage=stages[s]) for t, s in EVENT_MAP.items()
    )
    store(plan, generate())


def console_errors(page: Page) -> list[str]:
    """The page's console errors (the browser's own request for /favicon.ico, which the app
    does not serve, is not the page's)."""
    errors: list[str] = []

    def record(message) -> None:
        if message.type == "error" and "favicon.ico" not in message.location.get("url", ""):
            errors.append(f"{message.text} ({message.location.get('url')})")

    page.on("console", record)
    return errors


def all_charts_drawn(page: Page) -> None:
    """Every chart container was drawn by Plotly: it has Plotly's class and an SVG."""
    charts = page.locator("[data-chart]")
    count = charts.count()
    assert count > 0
    for i in range(count):
        chart = charts.nth(i)
        expect(chart).to_have_class(re.compile(r"\bjs-plotly-plot\b"))
        expect(chart.locator("svg.main-svg").first).to_be_visible()


def test_the_customers_page_draws_every_chart_and_fits_the_value_in_the_background(
    browsing, worker, plan, cmo
):
    seed(plan)
    page = browsing.page_for(cmo)
    errors = console_errors(page)
    page.goto(f"/plans/{plan.slug}/customers/")
    expect(page.get_by_role("heading", name="Customers by stage")).to_be_visible()
    # Composition, three loyalty figures, the funnel: drawn at once.
    expect(page.locator(".js-plotly-plot")).to_have_count(5)
    all_charts_drawn(page)
    value = page.locator("#value")
    expect(value).to_contain_text("Fitting the model…")
    worker.start_worker()
    # The page asks again every 2 s and draws the value's charts when the fit lands.
    expect(value.locator("[data-value=clv]")).to_be_visible(timeout=WORKER_MS)
    expect(page.locator(".js-plotly-plot")).to_have_count(7)
    all_charts_drawn(page)
    assert page.evaluate("window.__cspViolations") == []
    assert errors == []


def test_make_this_an_assumption_on_a_loyalty_figure(browsing, plan, cmo):
    seed(plan)
    choice = StrategicChoice.objects.create(plan=plan, title="Launch a loyalty subscription")
    StrategicChoice.objects.create(plan=plan, title="Retire the printed catalogue", position=1)
    page = browsing.page_for(cmo)
    errors = console_errors(page)
    page.goto(f"/plans/{plan.slug}/customers/")
    card = page.locator("article[data-metric=repeat_rate]")
    shown = card.locator("[data-latest-value]").inner_text()
    card.get_by_role("link", name="Make this an assumption").click()

    # Which choice rests on it, then the board's form, filled in.
    page.get_by_role("radio", name="Launch a loyalty subscription").check()
    page.get_by_role("button", name="Continue").click()
    form = page.get_by_role("article", name="New assumption")
    expect(form.get_by_label("Test: metric")).to_have_value("repeat_rate")
    expect(form.get_by_label("Within how many days")).to_have_value("30")
    expect(form.get_by_label("Window (days)")).to_have_value("90")
    expect(form.get_by_label("Threshold", exact=True)).to_have_value(shown.rstrip("%"))
    # The form's own preview measures today's data: the figure shown.
    expect(form.get_by_role("status")).to_contain_text(shown)
    with page.expect_response(lambda r: r.request.method == "POST" and "/new/" in r.url):
        form.get_by_role("button", name="Save").click()

    assumption = Assumption.objects.get(choice=choice)
    assert assumption.metric == "repeat_rate" and assumption.window_days == 90
    assert assumption.params == {"event_type": "purchase", "within_days": 30}
    value = measure(assumption, plan.pk, latest_event_at(plan.pk)).value
    assert assumption.format_value(value) == shown
    assert page.evaluate("window.__cspViolations") == []
    assert errors == []
